"""Dask: one task per image on a dask.distributed cluster, same output files and resume."""

from __future__ import annotations

import json
import sys

import pytest

from her2fish import batch_dask
from her2fish.batch import BatchError, run_batch
from her2fish.cli import main

from .test_batch import assert_whole, small  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_gives_the_same_tables_and_resumes(small, tmp_path, client, capsys):  # noqa: F811
    import cv2

    names = sorted(p.name for p in small.glob("*.tif"))
    run_batch([small], out_dir=tmp_path / "ref")
    threads = cv2.getNumThreads()
    # Two images through the Python API with a client, then --resume with the scheduler's
    # address: only the other two are scored, on the cluster, into the same files.
    result = run_batch([small / n for n in names[:2]], out_dir=tmp_path / "o", dask=client)
    assert result.n_failed == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["parameters"]["dask_scheduler"] == client.scheduler.address
    # The in-process worker shares this process: its OpenCV threads are left alone.
    assert cv2.getNumThreads() == threads
    assert main(["score", str(small), "--out", str(tmp_path / "o"), "--resume",
                 "--dask-scheduler", client.scheduler.address]) == 0
    captured = capsys.readouterr()
    assert "2 of 4 image(s) finished earlier, 2 to score" in captured.err
    assert "(2 kept from earlier runs)" in captured.out
    assert_whole(tmp_path / "o", names, reference=tmp_path / "ref")


def test_unreachable_scheduler_is_a_clear_error(small, tmp_path, capsys, monkeypatch):  # noqa: F811
    pytest.importorskip("distributed")
    monkeypatch.setattr(batch_dask, "DASK_CONNECT_TIMEOUT", "1s")
    code = main(["score", str(small), "--out", str(tmp_path / "o"), "-q",
                 "--dask", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not [p.name for p in (tmp_path / "o").iterdir() if p.name != "her2fish.log"]


def test_missing_dask_names_the_extra(small, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    with pytest.raises(BatchError, match=r"her2fish\[dask\]"):
        run_batch([small], out_dir=tmp_path / "o", dask="local")
    assert main(["score", str(small), "--out", str(tmp_path / "o"), "--dask", "local"]) == 2
    assert "pip install 'her2fish[dask]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_dask_local_cluster(small, tmp_path):  # noqa: F811
    pytest.importorskip("distributed")
    names = sorted(p.name for p in small.glob("*.tif"))[:2]
    assert main(["score", *[str(small / n) for n in names], "--out", str(tmp_path / "o"), "-q",
                 "--dask", "local", "--workers", "2"]) == 0
    assert_whole(tmp_path / "o", names)
