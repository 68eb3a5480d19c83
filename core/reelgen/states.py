"""The job and task states, importable without pydantic (the CLI's ``--state`` choices are
read at start-up)."""

from __future__ import annotations

from typing import Literal, get_args

TaskState = Literal["queued", "running", "succeeded", "failed", "canceled"]
"""What a provider reports about its task (:class:`reelgen.models.JobStatus`)."""

JobState = Literal[
    "planned",
    "submitting",
    "uncertain",
    "queued",
    "running",
    "result",
    "downloading",
    "succeeded",
    "failed",
    "canceled",
    "superseded",
]
"""Where a job stands in its lifecycle (the job log's ``state``; see :mod:`reelgen.lifecycle`).

``planned``: recorded, nothing sent. ``submitting``: the paid create may be on its way.
``uncertain``: a create may have gone through and no lookup settled it. ``queued`` /
``running``: accepted by the provider. ``result``: finished at the provider, video not saved
yet. ``downloading``: a process is saving it. ``succeeded``: the video is saved. ``failed`` /
``canceled``: over, nothing to save. ``superseded``: another job of the same request took over;
this one is never submitted again.
"""

JOB_STATES: tuple[str, ...] = get_args(JobState)
