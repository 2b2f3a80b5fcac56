"""The IRIS production, as IoP's typed graph: ``iop --migrate .../settings.py``.

    XRayPredictService ─┐                      ┌─ TfServingGpu  (tfserving-gpu:8501)
                        ├─► XRayRouter ────────┼─ TfServingCpu  (tfserving-cpu:8501)
    XRayJobService ─────┘   (core service      └─ FhirPublisher (FHIR server, queued)
                             and router)

    IcuPredictService ───► IntegratedML ───────► FhirPublisher (the same item: each single
                           (IcuService over SQL     prediction's RiskAssessment, queued)
                            PREDICT / PROBABILITY)

More operations join the same way: ``prod.operation(...)`` with a ``target()`` on the
component that sends to it and ``item.connect(...)`` here.

Offline, ``--strict-production-validation`` checks each item's settings against the
settings its Python class declares. The business-host settings IRIS itself defines (retry,
alerting) are not Python settings, so they are declared through :func:`host_settings`,
which checks their names against IRIS's documented lists instead.
"""

from __future__ import annotations

import os
from typing import Any

from iop import Production

from aistack.interop.fhir_operation import FhirOperation
from aistack.interop.icu import (
    ICU_OPERATION,
    ICU_SERVICE,
    IcuPredictService,
    IntegratedMLOperation,
)
from aistack.interop.operations import TfServingOperation
from aistack.interop.process import XRayRouter
from aistack.interop.services import (
    JOB_SERVICE,
    PREDICT_SERVICE,
    XRayJobService,
    XRayPredictService,
)

PRODUCTION = "AISTACK.Production"
COMMON_HOST_SETTINGS = frozenset(
    {"AlertGroups", "AlertOnError", "BusinessPartner", "InactivityTimeout"}
)
IRIS_HOST_SETTINGS = {
    # Ens.BusinessService, Ens.BusinessProcess, Ens.BusinessOperation (ENSLIB class reference)
    "service": COMMON_HOST_SETTINGS
    | {"AlertGracePeriod", "ArchiveIO", "ThrottleDelay", "GenerateSuperSessionID"},
    "process": COMMON_HOST_SETTINGS
    | {"AlertRetryGracePeriod", "QueueCountAlert", "QueueWaitAlert", "ReplyCodeActions"},
    "operation": COMMON_HOST_SETTINGS
    | {
        "AlertRetryGracePeriod",
        "ArchiveIO",
        "FailureTimeout",
        "NoFailWhileDisconnected",
        "QueueCountAlert",
        "QueueWaitAlert",
        "ReplyCodeActions",
        "RetryInterval",
        "SendSuperSession",
        "ThrottleDelay",
    },
}


def host_settings(item: Any, **values: Any) -> None:
    """Set IRIS's own business-host settings on ``item`` (a name IRIS does not define for
    that kind of host is an error here, at migration)."""
    known = IRIS_HOST_SETTINGS[item.kind]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{item.name}: {unknown} are not IRIS {item.kind} settings")
    item.production.update_component(
        item,
        other_settings=[
            {"@Target": "Host", "@Name": name, "#text": _text(value)}
            for name, value in values.items()
        ],
    )


def _text(value: Any) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def tf_serving_url(kind: str) -> str:
    """``AISTACK_TFSERVING_GPU_URL`` / ``..._CPU_URL``; default: the compose service."""
    return os.environ.get(f"AISTACK_TFSERVING_{kind.upper()}_URL", f"http://tfserving-{kind}:8501")


prod = Production(
    PRODUCTION,
    description="aistack: chest X-ray classification with Grad-CAM on TF Serving, "
    "ICU admission with IntegratedML",
    # Business processes without a pool of their own would share these jobs; XRayRouter
    # has its own, so two are enough for anything added later.
    actor_pool_size=2,
)

# Services are adapterless: the REST class creates them in its own CSP job for each request
# (Ens.Director.CreateBusinessService), so the production starts no job for them (pool 0).
predict_service = prod.service(PREDICT_SERVICE, XRayPredictService, pool_size=0)
job_service = prod.service(JOB_SERVICE, XRayJobService, pool_size=0)

# Two jobs of its own: one prediction per core decodes, renders and stores while the other
# waits on TF Serving; a private queue also keeps its messages apart from other processes.
router = prod.process("XRayRouter", XRayRouter, pool_size=2, settings={"routing": "gpu-first"})

# One job per router job, so neither router job waits on the other's TF Serving call.
gpu = prod.operation(
    "TfServingGpu",
    TfServingOperation,
    pool_size=2,
    settings={"backend": "gpu", "url": tf_serving_url("gpu"), "model": "covid19"},
)
cpu = prod.operation(
    "TfServingCpu",
    TfServingOperation,
    pool_size=2,
    settings={"backend": "cpu", "url": tf_serving_url("cpu"), "model": "covid19"},
)

# One job: publishes go out in order, and while the server is away the first message waits
# for it (IRIS's retry, below) and the others queue behind it, in IRIS's database.
fhir = prod.operation("FhirPublisher", FhirOperation, pool_size=1, settings={"timeout_s": 30.0})

# ICU admission: the REST class enters through its own service (pool 0, as above); one
# operation job holds the embedded SQL connection and answers one request at a time (a
# batch's occlusion explanations are one scoring batch per row). The trained model is the
# latest one the installer recorded; pin one with the operation's trained_model setting.
icu_service = prod.service(
    ICU_SERVICE, IcuPredictService, pool_size=0, settings={"timeout_s": 55.0}
)
icu = prod.operation(ICU_OPERATION, IntegratedMLOperation, pool_size=1)

predict_service.connect(XRayPredictService.Router, router)
job_service.connect(XRayJobService.Router, router)
router.connect(XRayRouter.TfServingGpu, gpu)
router.connect(XRayRouter.TfServingCpu, cpu)
router.connect(XRayRouter.FhirPublisher, fhir)
icu_service.connect(IcuPredictService.IntegratedML, icu)
icu.connect(IntegratedMLOperation.FhirPublisher, fhir)

for service in (predict_service, job_service, icu_service):
    # An exception escaping a service is a defect (errors travel as messages): alert at once.
    host_settings(service, AlertOnError=True)

# A message waiting 10 s for a router job has outlived the inference deadline: alert, the
# pool is too small for the load. Errors are answers here, so only defects raise alerts.
host_settings(router, AlertOnError=True, QueueWaitAlert=10)

for operation in (gpu, cpu):
    host_settings(
        operation,
        # Failures come back as messages and the router fails over within its deadline, so
        # IRIS's own retry only ever sees a defect: retry once a second, give up after 15 s
        # (a web client is waiting; never -1 here).
        RetryInterval=1,
        FailureTimeout=15,
        AlertOnError=True,
        # Half the inference deadline spent queued for an operation job: alert.
        QueueWaitAlert=5,
    )

host_settings(
    icu,
    # Failures come back as messages (a bad body is the client's 4xx, a model not trained yet
    # a 503), so IRIS's own retry only ever sees a defect: retry once a second, give up after
    # 15 s (a web client is waiting), alert at once.
    RetryInterval=1,
    FailureTimeout=15,
    AlertOnError=True,
)

host_settings(
    fhir,
    # A publish that raised is retried every 10 s and never given up (-1): the result must
    # reach the record, and every retry is idempotent (conditional creates). Except a Bundle
    # the server refused, or a prediction that cannot become one: retrying cannot help, so
    # the message fails at once (PublishRejected; fhir_operation.py explains the match).
    ReplyCodeActions="E*PublishRejected=F,E=R",
    RetryInterval=10,
    FailureTimeout=-1,
    # Alert on errors, but not for an outage shorter than a minute (a restart of the server);
    # and when 100 predictions wait: the server has been away for a while.
    AlertOnError=True,
    AlertRetryGracePeriod=60,
    QueueCountAlert=100,
)

PRODUCTIONS = [prod]
