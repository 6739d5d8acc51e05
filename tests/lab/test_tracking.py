"""MLflow bookkeeping: failure marking, URI checks, params and tags."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cvi_lab.lab import tracking as T


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    yield uri, T.setup(uri, "t", tmp_path / "mlruns")
    mlflow.set_tracking_uri(None)


def test_failed_run_is_marked_failed_with_error(store):
    uri, exp = store
    with pytest.raises(RuntimeError):
        with T.tracked_run(exp, "bad", {"a": "1"}, {"choice.asr": "x"}):
            raise RuntimeError("model exploded")
    with T.tracked_run(exp, "good", {"a": "2"}, {}):
        mlflow.log_metric("m", 1.0)
    runs = {r.info.run_name: r for r in MlflowClient(uri).search_runs([exp])}
    assert runs["bad"].info.status == "FAILED"
    assert runs["bad"].data.tags["error"] == "RuntimeError: model exploded"
    assert runs["good"].info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_unreachable_http_uri_is_a_clear_error():
    with pytest.raises(T.TrackingError, match="unreachable"):
        T.check_uri("http://127.0.0.1:9", timeout_s=1)


def test_bad_sqlite_folder_and_scheme(tmp_path):
    with pytest.raises(T.TrackingError, match="does not exist"):
        T.check_uri(f"sqlite:///{tmp_path}/no/such/dir/m.db")
    with pytest.raises(T.TrackingError, match="not a supported scheme"):
        T.check_uri("ftp://example.org/x")


def test_flatten_and_environment_tags():
    flat = T.flatten({"asr": {"model": "tiny", "beam": 1}, "scripts": ["a"], "x": None, "long": "y" * 7000})
    assert flat["asr.model"] == "tiny" and flat["asr.beam"] == "1" and flat["scripts"] == '["a"]'
    assert flat["x"] == "null" and len(flat["long"]) <= T.PARAM_VALUE_LIMIT
    tags = T.environment_tags()
    assert tags["git.commit"] and tags["machine.cpu_count"] and "version.faster-whisper" in tags


def test_lock_hash_names_both_lock_files_and_changes_with_either(tmp_path):
    assert T.lock_hash(tmp_path) == "absent"  # outside a checkout (an installed wheel)
    (tmp_path / "requirements.lock").write_text("a==1\n")
    assert T.lock_hash(tmp_path) == "absent"  # half a lock does not identify an environment
    (tmp_path / "requirements-nodeps.lock").write_text("b==2\n")
    first = T.lock_hash(tmp_path)
    assert len(first) == 16 and first == T.lock_hash(tmp_path)
    (tmp_path / "requirements-nodeps.lock").write_text("b==3\n")
    assert T.lock_hash(tmp_path) != first
    # the same bytes moved from one file to the other are another environment
    (tmp_path / "requirements.lock").write_text("")
    (tmp_path / "requirements-nodeps.lock").write_text("a==1\nb==2\n")
    assert T.lock_hash(tmp_path) != first


def test_environment_identity_of_this_checkout():
    import platform

    ident = T.environment_identity()
    assert set(ident) == {"env.lock_hash", "env.packages_hash", "env.python", "env.platform", "git.commit"}
    assert ident["env.lock_hash"] == T.lock_hash(T.REPO_ROOT) != "absent"  # the repo ships both locks
    assert len(ident["env.packages_hash"]) == 16
    assert platform.python_version() in ident["env.python"]
    assert ident == {**T.environment_identity()}  # stable within a process
    tags = T.environment_tags()
    assert {k: tags[k] for k in ident} == ident
