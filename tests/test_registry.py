"""The registry CSV (contract §4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.errors import RegistryError
from devices.registry import load_registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_columns_in_any_order_unknown_columns_kept_as_attributes(tmp_path: Path) -> None:
    reg = load_registry(
        write(
            tmp_path,
            "kind,pole_no,device_id,road,cabinet,rated_w,road_class,report_interval_s\n"
            "lamp,P-17,L1,洸河路,CAB-03,150,main,60\n"
            "waterlevel,,W1,运河路,,,,\n",
        )
    )
    lamp = reg.get("L1")
    assert lamp is not None
    assert (lamp.road, lamp.cabinet, lamp.rated_w, lamp.road_class) == (
        "洸河路",
        "CAB-03",
        150.0,
        "main",
    )
    assert lamp.report_interval_s == 60
    assert lamp.attributes == {"pole_no": "P-17"}
    assert reg.get("W1").report_interval_s == 300  # type: ignore[union-attr]
    assert reg.tags("lamp", "L1") == {"device": "L1", "road": "洸河路", "cabinet": "CAB-03"}
    assert reg.tags("lamp", "nope") == {"device": "nope"}
    assert [d.device_id for d in reg.by_cabinet("CAB-03")] == ["L1"]


def test_utf8_bom_from_excel_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("\ufeffdevice_id,kind\nL1,lamp\n".encode())
    assert "L1" in load_registry(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("device_id,kind\nL1,hydrant\n", "kind"),
        ("device_id,kind\nL 1,lamp\n", "device_id"),
        ("device_id,kind\nL1,lamp\nL1,lamp\n", "twice"),
        ("device_id,kind,rated_w\nL1,lamp,lots\n", "rated_w"),
        ("device_id,kind,road_class\nL1,lamp,motorway\n", "road_class"),
        ("id,kind\nL1,lamp\n", "device_id"),
        # Not numbers either: a NaN or infinite interval made every lighting rate a 500.
        ("device_id,kind,report_interval_s\nL1,lamp,nan\n", "report_interval_s"),
        ("device_id,kind,report_interval_s\nL1,lamp,inf\n", "report_interval_s"),
        ("device_id,kind,rated_w\nL1,lamp,NaN\n", "rated_w"),
        ("device_id,kind,lat\nL1,lamp,-Infinity\n", "lat"),
    ],
)
def test_bad_rows_fail_naming_file_line_and_column(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(RegistryError, match=match):
        load_registry(write(tmp_path, text))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nope.csv")
