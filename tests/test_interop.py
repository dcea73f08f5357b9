"""Standard formats round-trip: written by her2fish, read back with the ecosystem's libraries."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from her2fish.interop import (
    lims_result,
    nucleus_polygons,
    points_frame,
    qupath_geojson,
    write_excel_summary,
    write_geojson,
    write_label_ome_tiff,
    write_lims_json,
    write_points_csv,
)
from her2fish.pipeline import score_image


@pytest.fixture(scope="module")
def result(sample_paths):
    return score_image(sample_paths[3])  # amplified sample


def test_polygons_follow_the_pixel_mask():
    shapely = pytest.importorskip("shapely.geometry")
    labels = np.zeros((12, 12), np.int32)
    labels[2:5, 3:7] = 1  # 3 x 4 pixel rectangle
    labels[8:11, 8:10] = 2
    rings = nucleus_polygons(labels)
    poly = shapely.Polygon(rings[1])
    assert poly.is_valid
    # The contour at 0.5 cuts the corners: area a little under the 12 pixels.
    assert 10.5 <= poly.area <= 12
    minx, miny, maxx, maxy = poly.bounds
    assert (minx, miny, maxx, maxy) == pytest.approx((3.0, 2.0, 7.0, 5.0), abs=0.51)


def test_geojson_round_trip_with_shapely(result, tmp_path):
    shapely = pytest.importorskip("shapely.geometry")
    collection = qupath_geojson(result.labels, result.cells, spots=result.spots,
                                image_name=result.name, pixel_size_um=0.1)
    path = write_geojson(collection, tmp_path / "nuclei.geojson")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["type"] == "FeatureCollection"
    nuclei = [f for f in data["features"] if f["geometry"]["type"] == "Polygon"]
    points = [f for f in data["features"] if f["geometry"]["type"] == "Point"]
    assert len(nuclei) == len(result.cells) and len(points) == len(result.spots)
    cells = result.cells.set_index("cell_id")
    for feature in nuclei:
        props = feature["properties"]
        geom = shapely.shape(feature["geometry"])
        assert geom.is_valid and props["objectType"] == "detection"
        row = cells.loc[props["cell_id"]]
        assert props["classification"]["name"] == ("Evaluable" if row.evaluable else "Excluded")
        assert props["measurements"]["HER2 count"] == row.her2_count
        assert geom.area * 0.01 == pytest.approx(row.area_um2, rel=0.08)
        # the centroid of the polygon is the nucleus centroid (+0.5 px convention)
        assert geom.centroid.x == pytest.approx(row.x + 0.5, abs=1.5)
        assert geom.centroid.y == pytest.approx(row.y + 0.5, abs=1.5)
    classes = {f["properties"]["classification"]["name"] for f in points}
    assert classes == {"HER2", "CEP17"}


def test_label_ome_tiff_round_trip(result, tmp_path):
    path = write_label_ome_tiff(result.labels, tmp_path / "labels.ome.tif", pixel_size_um=0.1)
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        assert tif.is_ome and "PhysicalSizeX=\"0.1\"" in tif.ome_metadata
    np.testing.assert_array_equal(data, result.labels)
    assert data.dtype == np.uint16
    with pytest.raises(ValueError, match="pixel_size_um"):
        write_label_ome_tiff(result.labels, tmp_path / "x.tif", pixel_size_um=-1)


def test_points_csv_pixels_and_micrometres(result, tmp_path):
    px = pd.read_csv(write_points_csv(result.spots, tmp_path / "px.csv"))
    um = pd.read_csv(write_points_csv(result.spots, tmp_path / "um.csv", pixel_size_um=0.1))
    assert list(px.columns[:3]) == ["index", "axis-0", "axis-1"]
    np.testing.assert_allclose(px["axis-0"], result.spots.y)
    np.testing.assert_allclose(um["axis-1"], result.spots.x * 0.1)
    assert set(px.channel) == {"her2", "cep17"} and px.copies.sum() == result.spots.copies.sum()
    with pytest.raises(ValueError, match="y and x"):
        points_frame(pd.DataFrame({"a": [1]}))


def test_lims_json(result, tmp_path):
    doc = lims_result(result.summary, case_id="S26-0042", reviewer_status="unreviewed")
    path = write_lims_json(doc, tmp_path / "lims.json")
    back = json.loads(path.read_text(encoding="utf-8"))
    assert back["case_id"] == "S26-0042" and back["schema"] == "her2fish-lims-result"
    assert back["asco_cap_2018_group"] == 1 and back["ish_call"] == "positive"
    assert back["her2_cep17_ratio"] == pytest.approx(result.summary["her2_cep17_ratio"])
    assert back["counts"]["n_cells_scored"] == result.summary["n_cells_scored"]
    assert back["s1613"]["gcn_ge_20"] is False and back["software"]["name"] == "her2fish"
    assert isinstance(back["flags"], list)
    with pytest.raises(ValueError, match="reviewer_status"):
        lims_result(result.summary, reviewer_status="maybe")


def test_excel_summary(tmp_path):
    pytest.importorskip("openpyxl")
    images = pd.DataFrame({"image": ["a.tif"], "her2_cep17_ratio": [1.987654], "asco_cap_2018_group": [5]})
    path = write_excel_summary(images, tmp_path / "summary.xlsx")
    back = pd.read_excel(path)
    assert back.loc[0, "her2_cep17_ratio"] == pytest.approx(1.987654)  # unrounded in the cell
