from pathlib import Path

import pytest
from pydantic import ValidationError

from callrec.producers.settings import RecorderSettings


def test_defaults_and_the_shared_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLREC_KAFKA_BOOTSTRAP", "k1:9092")
    settings = RecorderSettings()
    assert settings.kafka_bootstrap == "k1:9092"
    assert settings.rtp_port_range == range(20000, 21000)
    monkeypatch.setenv("CALLREC_RECORDER_KAFKA_BOOTSTRAP", "k2:9092")
    assert RecorderSettings().kafka_bootstrap == "k2:9092"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLREC_RECORDER_ID", "from-env")
    monkeypatch.setenv("CALLREC_RECORDER_ALLOW", "10.0.0.0/8, 127.0.0.1")
    settings = RecorderSettings(id="from-flag", data_dir=Path("/tmp/x"))
    assert settings.id == "from-flag"
    assert [str(n) for n in settings.allowed_networks] == ["10.0.0.0/8", "127.0.0.1/32"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rtp_ports", "20000"),
        ("rtp_ports", "30000-20000"),
        ("rtp_ports", "80-90"),
        ("allow", "cucm"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        RecorderSettings(**{name: value})
