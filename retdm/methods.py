"""The method registry: what each method trains and how it differs from RETDM.

Every method trains through the same trainer, data and metric code. A method names the stages
it runs and its overrides of the ``loss`` config section. Feature methods (``estimator`` set)
run ``pretrain`` (shared), ``features`` (the BCE backbone's embeddings of every image, shared)
and ``fit`` (their estimator from ``retdm.shallow`` on those features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retdm.registry import Registry

FEATURE_STAGES = ("pretrain", "features", "fit")
FEATURES_FILE = "features.parquet"  # what the features stage writes into its directory
SHARED_STAGES = ("pretrain", "features")  # run once, as the bce model's, for every method


def stage_dir(out_dir: str | os.PathLike, method: str, stage: str) -> Path:
    """Where a method's stage writes: ``pretrain`` is the ``bce`` model and ``features`` its
    embeddings, both shared by every method."""
    return Path(out_dir) / ("bce" if stage in SHARED_STAGES else method) / stage


@dataclass(frozen=True)
class Method:
    """A trainable method.

    Attributes:
        name: registry name.
        stages: training stages it runs, in order (see ``retdm.train.stages``).
        source: where it comes from.
        loss: overrides of the ``loss`` config section (e.g. ``{"two_way": False}``).
        estimator: for a feature method, the name of its ``retdm.shallow`` class (options
            from ``TrainConfig.estimator``).
    """

    name: str
    stages: tuple[str, ...]
    source: str
    loss: dict[str, Any] = field(default_factory=dict)
    estimator: str | None = None

    @property
    def final_stage(self) -> str:
        return self.stages[-1]

    def estimator_class(self) -> type:
        """The ``retdm.shallow`` class of a feature method (imported here: it needs torch)."""
        import retdm.shallow

        return getattr(retdm.shallow, self.estimator)


METHODS: Registry[Method] = Registry("method")


def _register(method: Method, help: str) -> None:
    METHODS.register(method.name, help=help)(method)


_register(Method("bce", ("pretrain",), "paper §IV-B"),
          "backbone + BCE, the output of the pretrain stage (paper §IV-B)")
_register(Method("retdm", ("pretrain", "embed", "finetune"), "paper §III"),
          "the full method: pretrain, embed, finetune with Lcls + α(J1 + λJ2) + βJrec (paper §III)")
_register(Method("retdm_oneway", ("pretrain", "embed", "finetune"), "paper Table V", {"two_way": False}),
          "RETDM with way 1 only, J = J1 (paper Table V)")
# The paper's future work (§V): "input image's k nearest neighbors and their corresponding target
# labels can be also involved": each image's 10 nearest fit images by f_I join its 10 label-set
# neighbours as negatives of both ways (retdm.train.stages.ImageNeighbourTable).
_register(Method("retdm_imgnbr", ("pretrain", "embed", "finetune"), "paper §V (future work)", {"image_k": 10}),
          "RETDM whose negatives also come from each image's 10 nearest fit images and their label sets")
# The equal-epochs control: RETDM's gain must come from its loss, not from the extra low-lr epochs
# its classifier gets after the pretrain. RETDM's Φcnn and Φcls train in its finetune stage only
# (its embed stage freezes them and trains Φdnn, Φrec alone, which Lcls does not reach), so the
# control continues the BCE model through that finetune stage, the same epochs, lr schedule and
# best-epoch selection, with Lcls alone (α = β = 0).
_register(Method("bce_ft", ("pretrain", "finetune"), "equal-epochs control", {"alpha": 0.0, "beta": 0.0}),
          "the BCE model continued for RETDM's finetune epochs and schedule with Lcls alone (the control)")
# The deep baselines continue the BCE model for the finetune epochs RETDM gets, each with its own
# loss in place of RETDM's terms: the same backbone, data, epochs and selection for every row.
_register(Method("asl", ("pretrain", "finetune"), "Ridnik et al., ICCV 2021",
                 {"classification": "asl", "alpha": 0.0, "beta": 0.0}),
          "asymmetric loss (γ+ = 0, γ− = 4, clip 0.05) in place of BCE (Ridnik et al., ICCV 2021)")
_register(Method("center_loss", ("pretrain", "finetune"), "Wen et al., ECCV 2016 (paper's CL)",
                 {"center": 0.01, "alpha": 0.0, "beta": 0.0}),
          "BCE + a center per label pulling each image to its positive labels' centers (paper's CL)")
# The floor: the ImageNet backbone as it is, frozen, and a linear BCE head on its pooled features.
# Every fine-tuned method must beat it; one that does not has a broken recipe (it lost what the
# backbone knew). Only for a pretrained backbone (the synthetic `cpu` profile has none).
_register(Method("linear_probe", ("probe",), "Kumar et al., ICLR 2022 (LP)"),
          "the pretrained backbone frozen, a linear BCE head on its pooled features (the floor)")
# The feature methods learn on the BCE backbone's embeddings: the same representation, split
# and labels as the deep rows. Each estimator's module states where it deviates from its paper.
_register(Method("mlknn", FEATURE_STAGES, "Zhang & Zhou, Pattern Recognition 2007", estimator="MLkNN"),
          "ML-kNN on the BCE backbone's features: k = 10, s = 1, maximum a posteriori per label")
_register(Method("lmmo_knn", FEATURE_STAGES, "Liu & Tsang, AAAI 2015 (our reimplementation)", estimator="LMMOkNN"),
          "large-margin multi-output metric + kNN vote on the BCE backbone's features (paper's LMMO-kNN)")
_register(Method("mlspl", FEATURE_STAGES, "Li et al., IEEE TNNLS 2018 (our reimplementation)", estimator="MLSPL"),
          "self-paced multi-label learning on the BCE backbone's features (paper's MLSPL)")
_register(Method("c2ae", FEATURE_STAGES, "Yeh et al., AAAI 2017 (our reimplementation)", estimator="C2AE"),
          "canonical correlated autoencoder on the BCE backbone's features (paper's C2AE)")
