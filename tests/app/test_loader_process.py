"""The loader process: same results and errors as in-process loading, survives crashes and noise."""

from __future__ import annotations

import pickle
import time

import pytest

from analyzers.errors import CorruptFile, LayerScopeError, TrustRequired, UnsupportedFile
from analyzers.loaders import LoadOptions, open_model
from analyzers.tasks import Cancelled, CancelToken, Progress, drive
from app import child_process
from app.loader_process import LoaderProcess, error_message, rebuild_error
from tests.app import slow_loader
from tests.app.model_files import corrupted_safetensors, safetensors_file


@pytest.fixture
def child():
    proc = LoaderProcess()
    yield proc
    proc.close()


@pytest.fixture
def extras():
    slow_loader.register()
    slow_loader.register_extras()
    yield
    slow_loader.unregister_extras()
    slow_loader.unregister()


def test_same_summary_as_in_process(child, tmp_path) -> None:
    fixture = safetensors_file(tmp_path)
    seen = []
    remote = drive(child.open(fixture.path, LoadOptions(), CancelToken()), seen.append)
    local = drive(open_model(fixture.path))
    assert remote == local
    assert remote.totals.params == fixture.params
    assert all(isinstance(p, Progress) for p in seen)


def test_errors_come_back_as_the_same_class(child, tmp_path) -> None:
    with pytest.raises(CorruptFile, match=r"^broken\.safetensors: "):
        drive(child.open(corrupted_safetensors(tmp_path), LoadOptions(), CancelToken()))
    with pytest.raises(UnsupportedFile):
        drive(child.open(tmp_path / "absent.bin", LoadOptions(), CancelToken()))


def test_trust_required_keeps_path_and_detail(tmp_path) -> None:
    original = TrustRequired(tmp_path / "m.pt", "objects of class Net")
    rebuilt = rebuild_error(pickle.loads(pickle.dumps(error_message(original, tmp_path / "m.pt"))))
    assert isinstance(rebuilt, TrustRequired)
    assert (rebuilt.path, rebuilt.detail, str(rebuilt)) == (original.path, original.detail, str(original))


def test_a_crash_is_one_sentence_and_the_next_load_works(child, tmp_path, extras) -> None:
    crash = tmp_path / "dead.crashmodel"
    crash.write_text("x")
    with pytest.raises(LayerScopeError, match=r"^dead\.crashmodel: the loader process stopped .*exited with code 3"):
        drive(child.open(crash, LoadOptions(), CancelToken()))
    fixture = safetensors_file(tmp_path)
    assert drive(child.open(fixture.path, LoadOptions(), CancelToken())).totals.params == fixture.params


def test_prints_in_the_child_do_not_corrupt_the_stream(child, tmp_path, extras) -> None:
    noisy = tmp_path / "chatty.noisymodel"
    noisy.write_text("x")
    assert drive(child.open(noisy, LoadOptions(), CancelToken())).root.type == "Noisy"


def test_cancel_kills_the_child_at_once(child, tmp_path, extras) -> None:
    slow = slow_loader.write_slow(tmp_path / "long.slowmodel", steps=1000)
    token = CancelToken()
    steps = child.open(slow, LoadOptions(), token)
    assert next(steps).text.startswith(("Slow step", ""))
    token.cancel()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        drive(steps, token=token)
    assert time.monotonic() - started < 2
    assert child._proc is None  # killed; the next request starts a fresh child


def test_big_payloads_unpickle_in_pure_python(monkeypatch, tmp_path) -> None:
    fixture = safetensors_file(tmp_path)
    summary = drive(open_model(fixture.path))
    blob = pickle.dumps(summary)
    monkeypatch.setattr(child_process, "BIG_PAYLOAD", 10)
    assert child_process.loads(blob) == summary


def test_a_request_during_the_warm_up_gets_the_typed_model(child, tmp_path) -> None:
    """The second request arrives while the child imports transformers in the background: the
    Llama folder must still open as the class its config names, head included (the lazy module
    once answered 'no such class' mid-import and the folder opened as the bare LlamaModel)."""
    from tests.app.model_files import hf_llama_folder

    first = safetensors_file(tmp_path)
    fixture = hf_llama_folder(tmp_path)
    drive(child.open(first.path, LoadOptions(), CancelToken()))
    summary = drive(child.open(fixture.path, LoadOptions(), CancelToken()))
    assert summary.root.type == "LlamaForCausalLM"
    assert summary.totals.params == fixture.params
