"""Grading on a Dask cluster behind mutual TLS: certificates (:mod:`.certs`), the scheduler
(:mod:`.scheduler`), the workers that host the sandboxed grading slots (:mod:`.worker`) and the
instructor's side that sends them the submissions (:mod:`.client`)."""
