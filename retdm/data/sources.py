"""The catalogue of official dataset releases: per dataset, its files (URL, published checksum,
what each unpacks to), licence and the layout an importer relies on. ``retdm data describe``
prints one entry; :mod:`retdm.data.download` fetches and unpacks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from retdm.errors import DataError


@dataclass(frozen=True)
class SourceFile:
    """One official file of a dataset.

    Args:
        url: where it is downloaded from.
        filename: its name on disk.
        md5: published md5, or ``None`` (then a sha256 is pinned on first download).
        size: exact size in bytes when published (verified), else ``None``.
        extracts_to: top-level entries it adds to the dataset folder.
        into: sub-folder to extract into when the archive lacks that top folder.
        nested: inner archives to unpack in turn (each into a folder named after its stem).
        approx_bytes: rough size for ``describe`` only (never verified).
        hint: how to unpack it by hand, for error messages.
    """

    url: str
    filename: str
    md5: str | None = None
    size: int | None = None
    extracts_to: tuple[str, ...] = ()
    into: str | None = None
    nested: tuple[str, ...] = ()
    approx_bytes: int | None = None
    hint: str = ""


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and what its folder holds once unpacked.

    Args:
        name: dataset name as used on the command line.
        title: one-line description.
        homepage: official page.
        licence: terms of use, as far as they are known.
        layout: paths (globs allowed) that must exist in the dataset folder.
        files: the official files; empty when ``manual`` is set.
        manual: why and how to obtain the data by hand, when there is no download.
    """

    name: str
    title: str
    homepage: str
    licence: str
    layout: tuple[str, ...] = ()
    files: tuple[SourceFile, ...] = ()
    manual: str | None = None


_COCO, _VOC, _MIR = "http://images.cocodataset.org", "http://host.robots.ox.ac.uk/pascal/VOC/voc2007", \
    "http://press.liacs.nl/mirflickr/mirflickr25k.v3b"
_NUS = "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"
_MULAN = "https://mulan.sourceforge.net/datasets-mlc.html"

SOURCES: dict[str, DatasetSource] = {
    "coco": DatasetSource(
        "coco", "MS-COCO 2014 train/val images and instance annotations", "https://cocodataset.org/#download",
        "annotations CC BY 4.0 (COCO Consortium); images under their Flickr owners' terms "
        "(https://cocodataset.org/#termsofuse)",
        layout=("train2014/*.jpg", "val2014/*.jpg", "annotations/instances_train2014.json",
                "annotations/instances_val2014.json"),
        files=(SourceFile(f"{_COCO}/zips/train2014.zip", "train2014.zip", "0da8c0bd3d6becc4dcb32757491aca88",
                          extracts_to=("train2014",), approx_bytes=13_500_000_000),
               SourceFile(f"{_COCO}/zips/val2014.zip", "val2014.zip", "a3d79f5ed8d289b7a7554ce06a5782b3",
                          extracts_to=("val2014",), approx_bytes=6_600_000_000),
               SourceFile(f"{_COCO}/annotations/annotations_trainval2014.zip", "annotations_trainval2014.zip",
                          "0a379cfc70b0e71301e0f377548639bd", extracts_to=("annotations",), approx_bytes=253_000_000))),
    "voc2007": DatasetSource(
        "voc2007", "PASCAL VOC 2007 trainval and test", "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
        "images from Flickr under Flickr's terms of use; annotations for research use (see the VOC page)",
        layout=("VOCdevkit/VOC2007/JPEGImages/*.jpg", "VOCdevkit/VOC2007/Annotations/*.xml",
                "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt", "VOCdevkit/VOC2007/ImageSets/Main/test.txt"),
        files=(SourceFile(f"{_VOC}/VOCtrainval_06-Nov-2007.tar", "VOCtrainval_06-Nov-2007.tar",
                          "c52e279531787c972589f7e41ab4ae64", extracts_to=("VOCdevkit",), approx_bytes=460_000_000),
               SourceFile(f"{_VOC}/VOCtest_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar",
                          "b6e924de25625d8de591ea690078ad9f", extracts_to=("VOCdevkit",), approx_bytes=451_000_000))),
    "mirflickr": DatasetSource(
        "mirflickr", "MIRFLICKR-25k images and v080 annotations", "https://press.liacs.nl/mirflickr/",
        "images from Flickr under Creative Commons licences (each image's licence ships in the archive); "
        "cite Huiskes & Lew, MIR 2008",
        layout=("mirflickr/im*.jpg", "mirflickr25k_annotations_v080/*.txt"),
        files=(SourceFile(f"{_MIR}/mirflickr25k.zip", "mirflickr25k.zip", "a23d0a8564ee84cda5622a6c2f947785",
                          size=3069184257, extracts_to=("mirflickr",)),
               # The annotations zip holds its .txt files at top level, without a folder.
               SourceFile(f"{_MIR}/mirflickr25k_annotations_v080.zip", "mirflickr25k_annotations_v080.zip",
                          "aa0138c79892b1b670184d142380948f", extracts_to=("mirflickr25k_annotations_v080",),
                          into="mirflickr25k_annotations_v080"))),
    "scene": DatasetSource(
        "scene", "MIML natural scene images (2000 images, 5 labels)", "http://www.lamda.nju.edu.cn/data_MIMLimage.ashx",
        "MIML image data (Zhou & Zhang, LAMDA, Nanjing University), for academic use only",
        # Officially processed/miml data.mat; data.csv is the 0/1 table some copies carry instead.
        layout=("original/*.jpg", "**/miml data.mat | data.csv"),
        files=(SourceFile("http://www.lamda.nju.edu.cn/files/miml-image-data.rar", "miml-image-data.rar",
                          extracts_to=("original", "processed"), nested=("original.rar", "processed.rar"),
                          hint="it holds original.rar and processed.rar: extract them so that original/*.jpg and "
                               "'processed/miml data.mat' exist in one folder"),)),
    "nuswide": DatasetSource(
        "nuswide", "NUS-WIDE (269,648 Flickr images, 81 concepts)", _NUS,
        "research use; the images are given on request under Flickr's terms",
        # The images may live elsewhere (the importer takes their folder), so they are not part of the layout.
        layout=("Groundtruth/TrainTestLabels", "ImageList/TrainImagelist.txt", "ImageList/TestImagelist.txt"),
        manual=f"NUS-WIDE images are distributed on request only, so there is nothing to download automatically. "
               f"From {_NUS} get Groundtruth and ImageList (the low-level features and tags are not needed) and "
               "request the images; unpack Groundtruth/ and ImageList/ into one folder (the images, Flickr/, "
               "normally beside them) and pass it with --from"),
    "mulan": DatasetSource(
        "mulan", "MULAN multi-label benchmarks (feature vectors, ARFF + XML)", _MULAN,
        "per dataset; see the MULAN page and each dataset's original source",
        manual=f"MULAN datasets come one archive per dataset (<name>.arff with its <name>.xml label list) from "
               f"{_MULAN}; there is no fixed catalogue. Download and unpack the ones you need into a folder "
               "and pass it with --from"),
}


def describe(dataset: str | DatasetSource) -> str:
    """What obtaining ``dataset`` involves: files, sizes, checksums, licence, resulting layout.

    Args:
        dataset: a name in ``SOURCES`` or a ``DatasetSource``.

    Returns:
        A multi-line, human-readable summary.
    """
    src = get_source(dataset)
    lines = [f"{src.name}: {src.title}", f"  home page: {src.homepage}", f"  licence: {src.licence}"]
    if src.manual is not None:
        return "\n".join(lines + [f"  no automatic download: {src.manual}"])
    lines.append("  downloads:")
    total, exact = 0, True
    for f in src.files:
        nbytes = f.size or f.approx_bytes
        exact &= f.size is not None
        total += nbytes or 0
        size = human_size(f.size) if f.size else f"about {human_size(nbytes)}" if nbytes else "size not published"
        check = f"md5 {f.md5}" if f.md5 else "no published checksum (its sha256 is pinned on first download)"
        lines.append(f"    {f.filename}  {size}  {check}\n      from {f.url}")
    if total:
        lines.append(f"  total: {'' if exact else 'about '}{human_size(total)} to download, about as much again unpacked")
    lines.append(f"  unpacks to: {', '.join(src.layout)}")
    return "\n".join(lines)


def get_source(dataset: str | DatasetSource) -> DatasetSource:
    """The catalogue entry of ``dataset`` (a ``DatasetSource`` is returned as is); an unknown name lists the known."""
    if isinstance(dataset, DatasetSource):
        return dataset
    if dataset not in SOURCES:
        raise DataError(f"no download source for dataset {dataset!r}; known sources are: {', '.join(sorted(SOURCES))}")
    return SOURCES[dataset]


def human_size(nbytes: int) -> str:
    """``3069184257`` → ``"3.1 GB"`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"
