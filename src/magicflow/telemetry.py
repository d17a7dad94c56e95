"""Turning tracing on for a ``magic-flow`` process: the OpenTelemetry SDK and its exporter.

Tracing is on when the ``tracing`` setting is true (``MAGICFLOW_TRACING=true``, ``tracing =
true`` in ``magicflow.toml``), or when the standard variables ask for spans:
``OTEL_TRACES_EXPORTER`` (other than ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. ``OTEL_SDK_DISABLED=true`` turns it off whatever the
rest says. The SDK reads the other standard variables itself (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, the OTLP endpoint, headers, timeout).

Exporters (``OTEL_TRACES_EXPORTER``, comma-separated): ``otlp`` (the default; OTLP over HTTP,
``http://localhost:4318`` unless configured; ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` needs the
``opentelemetry-exporter-otlp-proto-grpc`` package), ``console`` (JSON on stderr, stdout stays
the command's) and ``none``. Needs the ``otel`` extra: ``pip install 'magicflow[otel]'``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from magicflow.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_ON = {"1", "true", "yes", "on"}


def tracing_requested(setting: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process should record spans (see the module's docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _ON:
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return (
        setting
        or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        or bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    )


def start_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> TracerProvider:
    """An SDK tracer provider exporting as the environment says, set as the global one (so
    that spans the business functions make join the step's trace)."""
    env = os.environ if environ is None else environ
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigurationError(
            "tracing needs the OpenTelemetry SDK: pip install 'magicflow[otel]'"
        ) from None
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    for name in dict.fromkeys(n.strip() for n in names.split(",") if n.strip()):
        exporter = _exporter(name, env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


@contextmanager
def tracing(setting: bool, service_name: str) -> Iterator[TracerProvider | None]:
    """The provider while the body runs (None when tracing is off); its spans are flushed
    when the body ends."""
    if not tracing_requested(setting):
        yield None
        return
    provider = start_tracing(service_name)
    try:
        yield provider
    finally:
        provider.shutdown()


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if name != "otlp":
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigurationError(
                "OTLP over gRPC needs: pip install opentelemetry-exporter-otlp-proto-grpc "
                "(or use the default, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"
            ) from None
        exporter: SpanExporter = GrpcExporter()
        return exporter
    if protocol.strip() != "http/protobuf":
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported "
            "(use http/protobuf or grpc)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
