"""Ray, bounded: the cores we ask for on one machine, or a cluster when RAY_ADDRESS says so."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import ray

from core.config import Settings


@contextmanager
def ray_session(settings: Settings):
    """Start (and afterwards stop) a local Ray limited to `settings.ray_num_cpus`, or attach to
    the cluster in RAY_ADDRESS. A session already started by the caller is reused and left up."""
    if ray.is_initialized():
        yield
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=settings.ray_num_cpus,
            object_store_memory=settings.ray_object_store_mb * 1024 * 1024,
            include_dashboard=False,  # never expose Ray's dashboard or job ports
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    try:
        yield
    finally:
        ray.shutdown()
