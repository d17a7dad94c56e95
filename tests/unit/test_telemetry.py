"""When commands turn tracing on, and the exporters they accept."""

from __future__ import annotations

import importlib.util

import pytest

from magicflow.errors import ConfigurationError
from magicflow.telemetry import _exporter, tracing, tracing_requested


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (False, {"OTEL_TRACES_EXPORTER": "console"}, True),
        (True, {"OTEL_TRACES_EXPORTER": "none"}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
        (False, {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_tracing_is_requested_by_the_setting_or_the_otel_variables(
    setting: bool, environ: dict[str, str], expected: bool
) -> None:
    assert tracing_requested(setting, environ) is expected


def test_unknown_exporters_and_protocols_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown exporter 'jaeger'"):
        _exporter("jaeger", {})
    with pytest.raises(ConfigurationError, match="'http/json' is not supported"):
        _exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert _exporter("none", {}) is None


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None,
    reason="the gRPC exporter is installed",
)
def test_grpc_without_its_package_says_what_to_install() -> None:
    with pytest.raises(ConfigurationError, match="opentelemetry-exporter-otlp-proto-grpc"):
        _exporter("otlp", {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})


def test_off_yields_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    with tracing(False, "magicflow-test") as provider:
        assert provider is None
