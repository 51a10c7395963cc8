"""The workload build layer: between the planner (WorkerSpecs) and the operators (API calls).

``options`` holds everything about a worker workload except its spec (image, KPO pod arguments,
credentials source) as one frozen object, built from operator arguments or a sync-task config;
``specs`` coerces spec input and builds the stream spec; ``render`` turns options + specs into a
Pod, Job, Indexed Job, queue Job or Deployment plus its Secret/ConfigMap companions. Pure (a pod
template file is the only thing read), no Airflow import beyond cncf-kubernetes' pod-template
merge; errors are plain ValueErrors naming the field. Operators, the DAG factory and
``zdtp render`` all call these functions, so what is rendered is what runs.
"""

from zdtp_provider.workload.errors import WorkloadError
from zdtp_provider.workload.options import CredentialsChoice, WorkloadOptions, config_kwargs
from zdtp_provider.workload.pod_args import PodArguments, take_pod_arguments
from zdtp_provider.workload.render import (
    Rendered,
    deployment_name,
    render_deployment,
    render_indexed_job,
    render_job,
    render_pod,
    render_queue_job,
)
from zdtp_provider.workload.specs import resolve_spec, resolve_specs, stream_spec

__all__ = [
    "CredentialsChoice",
    "PodArguments",
    "Rendered",
    "WorkloadError",
    "WorkloadOptions",
    "config_kwargs",
    "deployment_name",
    "render_deployment",
    "render_indexed_job",
    "render_job",
    "render_pod",
    "render_queue_job",
    "resolve_spec",
    "resolve_specs",
    "stream_spec",
    "take_pod_arguments",
]
