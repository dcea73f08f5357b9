"""Bad-input corpus through the Python API, the napari reader and the CLI batch (issue 7)."""

from __future__ import annotations

import pandas as pd
import pytest

from her2fish._napari._reader import napari_get_reader
from her2fish.cli import main
from her2fish.pipeline import score_image

from .corpus.make_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root)


def _ids(cases):
    return [c.name for c in cases]


def test_python_api_scores_or_refuses_clearly(corpus):
    _, cases = corpus
    for case in cases:
        if case.ok:
            result = score_image(case.path)
            assert result.summary["n_cells_scored"] >= 0, case.name
            assert (result.cells["her2_count"] >= 0).all()
        else:
            with pytest.raises((ValueError, FileNotFoundError)) as exc:
                score_image(case.path)
            message = str(exc.value)
            for text in case.error_contains:
                assert text in message, (case.name, message)


def test_napari_reader_never_raises(corpus):
    _, cases = corpus
    for case in cases:
        reader = napari_get_reader(str(case.path))
        if case.ok:
            assert reader is not None, case.name
            assert len(reader(str(case.path))) == 3
        else:
            assert reader is None, case.name


def test_cli_batch_scores_the_rest(corpus, tmp_path, capsys):
    root, cases = corpus
    code = main(["score", str(root), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1  # some images failed, and the run said so
    images = pd.read_csv(tmp_path / "out" / "images.csv", keep_default_na=False)
    names = {c.path.relative_to(root).as_posix(): c for c in cases}
    assert set(images["image"]) == set(names)  # every file reported once; the symlink loop ended
    assert images["image"].is_unique
    for row in images.itertuples():
        case = names[row.image]
        assert row.status == ("ok" if case.ok else "error"), (case.name, row.error)
        if not case.ok:
            assert row.error and all(t in row.error or t == case.path.name for t in case.error_contains)
    err = capsys.readouterr().err
    assert "huge_header.tif" in err
    assert {"slideA/field.ome.tif", "slideB/field.ome.tif"} <= set(images["image"])
