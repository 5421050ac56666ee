"""What a deploy target reports about the resources its replicas use: one sample per
replica (a process on the local target, a pod on Kubernetes), taken when asked.

The monitor adds the samples to its windows (mean and peak CPU, peak and last RSS, peak
connections, restarts in the window); the API shows the latest ones live.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReplicaSample(BaseModel):
    """One replica's resources at one moment."""

    model_config = ConfigDict(frozen=True)

    project: str
    deployment: str
    model: str
    version: int
    revision: int
    replica: int = Field(description="The replica's index within its revision (0, 1, ...).")
    pid: int | None = Field(description="Its process id, when it runs as a local process.")
    state: str = Field(description="starting, ready, draining or stopping.")
    cpu_percent: float = Field(
        description="CPU used since the previous sample (the process's whole life for the "
        "first), in % of one core: 200 is two cores busy."
    )
    rss_bytes: int = Field(
        description="Resident memory of the process and its children (a pod's working set on "
        "Kubernetes)."
    )
    connections: int = Field(
        description="Established TCP connections it holds (0 on Kubernetes: not read)."
    )
    restarts: int = Field(
        description="Times it crashed and was restarted since it was first started on this server."
    )
    uptime_s: float = Field(description="Seconds since its current process started.")
    measured: bool = Field(
        default=True,
        description="False when its CPU and memory could not be read (a Kubernetes pod "
        "without a reading from the metrics API): cpu_percent and rss_bytes are then 0.",
    )

    @property
    def slot(self) -> str:
        """``r{revision}/{replica}``: the replica's name across restarts."""
        return f"r{self.revision}/{self.replica}"
