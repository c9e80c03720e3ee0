"""Reference data of the sample municipality (石家庄市, GB/T 2260 code 130100), read from ``schemas/reference``.

Every file read here is a copy in the repository (see the SOURCE.md beside each); nothing is read from
``/work/shared`` at run time.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import shapely
from shapely.geometry import shape
from shapely.prepared import prep

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE
from sample.attributes import EDUCATION_LEVELS, MARITAL_LEVELS

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

#: Census columns of the 5-year age groups, in age order: (first age, last age, column suffix).
#: 85岁以上 is spread over 85..100 by :func:`age_weights`.
AGE_GROUPS: tuple[tuple[int, int, str], ...] = (
    (0, 0, "0岁"), (1, 4, "1到4岁"), (5, 9, "5到9岁"), (10, 14, "10到14岁"), (15, 19, "15到19岁"),
    (20, 24, "20到24岁"), (25, 29, "25到29岁"), (30, 34, "30到34岁"), (35, 39, "35到39岁"),
    (40, 44, "40到44岁"), (45, 49, "45到49岁"), (50, 54, "50到54岁"), (55, 59, "55到59岁"),
    (60, 64, "60到64岁"), (65, 69, "65到69岁"), (70, 74, "70到74岁"), (75, 79, "75到79岁"),
    (80, 84, "80到84岁"), (85, 100, "85岁以上"),
)
MAX_AGE = 100


@dataclass
class Community:
    """A community or village committee (村/居委会, 12-digit statistical code)."""

    code: str
    name: str
    street_code: str
    is_village: bool


@dataclass
class District:
    """A county-level district of the sample city with its census calibration and boundary.

    Attributes:
        code: 6-digit GB/T 2260 code.
        name: Chinese name (from the boundary file).
        population: census 2020 total population (persons).
        family_households / family_household_persons / one_person_households: census household counts.
        age_weights: {'1': [w_0 .. w_100], '2': [...]} persons per single year of age by GB/T 2261.1 sex code.
        geometry: shapely (Multi)Polygon in lng/lat degrees; ``prepared`` is its prepared form.
        streets: {9-digit street code: name}; communities: list of :class:`Community` of this district.
        education: {'1'|'2': census persons per level of :data:`sample.attributes.EDUCATION_LEVELS`}
            (columns ``未上过学_男`` … ``本科及以上_女``).
        marital: {'1'|'2': census persons aged 15+ per status of :data:`sample.attributes.MARITAL_LEVELS`}
            (columns ``未婚_男`` … ``丧偶_女``).
        floating_share: (户口登记地在外乡镇街道人口_省外 + _本省其他县) / 人口数_合计, registered elsewhere.
    """

    code: str
    name: str
    population: int
    family_households: int
    family_household_persons: int
    one_person_households: int
    age_weights: dict[str, list[float]]
    geometry: BaseGeometry
    prepared: object = None
    streets: dict[str, str] = field(default_factory=dict)
    communities: list[Community] = field(default_factory=list)
    education: dict[str, list[float]] = field(default_factory=dict)
    marital: dict[str, list[float]] = field(default_factory=dict)
    floating_share: float = 0.0


def age_weights(row: dict[str, str], sex_word: str) -> list[float]:
    """Spread a census row's 5-year groups of one sex (``'男'`` or ``'女'``) over single years 0..100.

    Each group's count is split evenly over its years; 85岁以上 decays by a factor 0.8 a year over 85..100.
    Source: census columns ``男_0岁`` … ``女_85岁以上`` (7th national census, 2020).
    """
    weights = [0.0] * (MAX_AGE + 1)
    for first, last, suffix in AGE_GROUPS:
        count = float(row[f"{sex_word}_{suffix}"] or 0)
        if suffix == "85岁以上":
            shares = [0.8 ** (a - first) for a in range(first, last + 1)]
        else:
            shares = [1.0] * (last - first + 1)
        total = sum(shares)
        for age, share in zip(range(first, last + 1), shares, strict=False):
            weights[age] = count * share / total
    return weights


def _num(row: dict[str, str], column: str) -> float:
    """A census cell as float (empty or missing → 0.0)."""
    return float(row.get(column) or 0)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_districts(reference_dir: Path = REFERENCE_DIR) -> list[District]:
    """Load the districts of 130100 that have a boundary polygon, a census row and communities.

    Returns:
        districts sorted by code, each with its streets and communities (sorted by code).
    Raises:
        FileNotFoundError: a reference file is missing.
    """
    city4 = SAMPLE_CITY_CODE[:4]
    geo = json.loads((reference_dir / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    polygons = {f["properties"]["gb"][3:]: (f["properties"]["name"], shape(f["geometry"]))
                for f in geo["features"]}
    census = {r["区划代码"]: r for r in _read_csv(reference_dir / "census" / "census_county_2020_130100.csv")
              if r["区划代码"]}
    streets = _read_csv(reference_dir / "divisions" / "streets_130100.csv")
    villages = _read_csv(reference_dir / "divisions" / "villages_130100.csv")

    districts: dict[str, District] = {}
    for code in sorted(polygons):
        if not code.startswith(city4) or code not in census:
            continue
        name, geom = polygons[code]
        shapely.prepare(geom)  # fast shapely.contains_xy point tests
        row = census[code]
        districts[code] = District(
            code=code, name=name, population=int(float(row["人口数_合计"])),
            family_households=int(float(row["家庭户数"])),
            family_household_persons=int(float(row["家庭户人口数"])),
            one_person_households=int(float(row["一人户数"])),
            age_weights={"1": age_weights(row, "男"), "2": age_weights(row, "女")},
            geometry=geom, prepared=prep(geom),
            education={s: [_num(row, f"{level}_{word}") for level, _ in EDUCATION_LEVELS]
                       for s, word in (("1", "男"), ("2", "女"))},
            marital={s: [_num(row, f"{status}_{word}") for status, _ in MARITAL_LEVELS]
                     for s, word in (("1", "男"), ("2", "女"))},
            floating_share=min(1.0, (_num(row, "户口登记地在外乡镇街道人口_省外")
                                     + _num(row, "户口登记地在外乡镇街道人口_本省其他县"))
                               / max(1.0, _num(row, "人口数_合计"))))
    for s in streets:
        if s["areaCode"] in districts:
            districts[s["areaCode"]].streets[s["code"]] = s["name"]
    for v in sorted(villages, key=lambda r: r["code"]):
        d = districts.get(v["areaCode"])
        if d is not None and v["streetCode"] in d.streets:
            d.communities.append(Community(code=v["code"], name=v["name"], street_code=v["streetCode"],
                                           is_village=v["name"].endswith(("村民委员会", "村委会"))))
    return [d for d in districts.values() if d.communities]


def load_categories(reference_dir: Path = REFERENCE_DIR) -> list[tuple[str, str, str]]:
    """The 3-level category tree of citizen messages as (l1, l2, l3) tuples, file order."""
    return [(r["一级分类"], r["二级分类"], r["三级分类"])
            for r in _read_csv(reference_dir / "hotline" / "categories.csv")]


def load_labeled_messages(reference_dir: Path = REFERENCE_DIR) -> list[dict[str, str]]:
    """Real messages with their first-level category (columns 留言编号 … 留言详情, 一级分类), file order."""
    return _read_csv(reference_dir / "hotline" / "messages_labeled_sample.csv")


def load_messages(reference_dir: Path = REFERENCE_DIR) -> tuple[list[str], list[list[str]]]:
    """The real message board file: (header, rows) with every field verbatim as text.

    Header: 留言编号,留言用户,留言主题,留言时间,留言详情,反对数,点赞数.
    """
    with (reference_dir / "hotline" / "messages_2019.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]
