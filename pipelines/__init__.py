"""The pipeline around ``retdm``: one thin entry point per DVC stage, the Prefect flows and the
Great Expectations suite. ``dvc.yaml`` runs the stages; ``pipelines.flows`` runs the same ones
under Prefect."""
