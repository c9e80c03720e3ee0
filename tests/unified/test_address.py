"""unified.address: normalisation rules, gazetteer parse, registry match levels, geocode repair, point-in-polygon
grid assignment and an idempotent MERGE (govlake.unified.address), and the sample's grid boundaries (sample.grids)."""
from __future__ import annotations

from collections import Counter

import pytest
import shapely
from shapely.geometry import Polygon, box

from govlake.unified import address as A
from sample import grids as G

AREAS = [{"code": "130102", "name": "长安区"}, {"code": "130104", "name": "桥西区"},
         {"code": "110101", "name": "东城区"}]
STREETS = [{"code": "130102101", "name": "南村镇", "areaCode": "130102"},
           {"code": "130104015", "name": "彭后街道", "areaCode": "130104"},
           {"code": "130104016", "name": "东风街道", "areaCode": "130104"}]
VILLAGES = [{"code": "130102101002", "name": "南村社区居民委员会", "streetCode": "130102101", "areaCode": "130102"},
            {"code": "130102101005", "name": "东营村民委员会", "streetCode": "130102101", "areaCode": "130102"},
            {"code": "130104015002", "name": "棉七居民委员会", "streetCode": "130104015", "areaCode": "130104"},
            {"code": "130104016001", "name": "槐中路居民委员会", "streetCode": "130104016", "areaCode": "130104"},
            {"code": "130104015009", "name": "槐中路居民委员会", "streetCode": "130104015", "areaCode": "130104"}]
GAZ = A.build_gazetteer(AREAS, STREETS, VILLAGES)


# --- normalisation rules -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("长安区南村镇南村社区２３号楼５单元１００４室", "长安区南村镇南村社区23号楼5单元1004室"),      # N1 full-width
    (" 长安区 南村镇\u3000南村社区23号楼5单元1004室\t", "长安区南村镇南村社区23号楼5单元1004室"),  # N2 whitespace
    ("河北省石家庄市长安区南村镇南村社区23号楼5单元1004室", "长安区南村镇南村社区23号楼5单元1004室"),  # N3
    ("长安区南村镇南村社区居民委员会23号楼5单元1004室", "长安区南村镇南村社区23号楼5单元1004室"),  # N4 full name
    ("长安区南村镇东营村民委员会85号", "长安区南村镇东营村85号"),                                  # N4 village
    ("长安区南村镇南村社区二十三号楼五单元一〇〇四室", "长安区南村镇南村社区23号楼5单元1004室"),    # N5 numerals
    ("长安区南村镇南村社区23栋5门1004", "长安区南村镇南村社区23号楼5单元1004室"),                 # N6 栋/门/no 室
    ("长安区南村镇南村社区23幢5单元1004号", "长安区南村镇南村社区23号楼5单元1004室"),             # N6 幢/号
    ("长安区南村镇南村社区23-5-1004", "长安区南村镇南村社区23号楼5单元1004室"),                   # N6 dashes
    ("长安区南村镇南村社区023号楼05单元0204室", "长安区南村镇南村社区23号楼5单元204室"),         # N7 zeros
    ("桥西区彭后街道办事处棉七16号楼4单元1403室", "桥西区彭后街道棉七16号楼4单元1403室"),          # N4 办事处
])
def test_normalisation_rules(raw, expected):
    assert A.parse_address(raw, GAZ).normalized == expected


def test_province_and_city_prefixes_come_from_the_division_lists():
    assert A.load_gazetteer().prefixes == (("河北省", "河北"), ("石家庄市", "石家庄"))
    assert A.place_prefixes("内蒙古自治区", "呼和浩特市") == (("内蒙古自治区", "内蒙古"), ("呼和浩特市", "呼和浩特"))
    assert A.place_prefixes("北京市", "市辖区") == (("北京市", "北京"), ())
    other = A.build_gazetteer(AREAS, STREETS, VILLAGES, province_name="山西省", city_name="太原市")
    assert A.parse_address("山西太原市长安区南村镇南村社区23号楼", other).normalized == "长安区南村镇南村社区23号楼"
    # another city's gazetteer does not drop 河北省: the text is then not parsed as this city's address
    assert A.parse_address("河北省长安区南村镇南村社区23号楼", other).normalized == "河北省长安区南村镇南村社区23号楼"
    assert A.normalize_text("河北石家庄长安区", (("河北省", "河北"), ("石家庄市", "石家庄"))) == "长安区"


def test_chinese_numerals_and_place_names_keep_their_characters():
    assert [A.zh_numeral(t) for t in ("十二", "二十", "一百零五", "一〇二", "两")] == [12, 20, 105, 102, 2]
    p = A.parse_address("桥西区彭后街道棉七三号楼二单元十二室", GAZ)   # 七 of 棉七 is part of the name
    assert (p.normalized, p.community_code, p.number_key) == ("桥西区彭后街道棉七3号楼2单元12室", "130104015002",
                                                              "3/2/12")
    with pytest.raises(ValueError):
        A.zh_numeral("三a")


def test_parse_components_and_ambiguous_names():
    p = A.parse_address("南村社区23号楼5单元1004室", GAZ)   # no district, no street: found city-wide
    assert (p.district_code, p.street_code, p.community_code, p.building, p.unit, p.room) == \
        ("130102", "130102101", "130102101002", "23", "5", "1004")
    village = A.parse_address("长安区南村镇东营村85号", GAZ)
    assert (village.community_code, village.house_no, village.number_key) == ("130102101005", "85", "85")
    # 槐中路 names two committees of 桥西区: not taken without the street, taken with it
    assert A.parse_address("桥西区槐中路22号楼2单元302室", GAZ).community_code is None
    assert A.parse_address("桥西区东风街道槐中路22号楼2单元302室", GAZ).community_code == "130104016001"
    assert A.parse_address("   ", GAZ).normalized is None


def test_registry_repairs():
    assert A.restore_division_code("13010211", "130102001", None) == "130102001001"
    assert A.restore_division_code("1301021021", "130102010", None) == "130102010021"
    assert A.restore_division_code("130104912", "130104009", None) == "130104009012"
    assert A.restore_division_code("130102101002", "130102101", None) == "130102101002"
    assert A.restore_division_code("99", None, "130102101002001") == "130102101002"
    assert A.restore_division_code(None, None, None) is None
    assert A.clean_point("114.51", "38.08") == (114.51, 38.08, "ok")
    assert A.clean_point(38.08, 114.51) == (114.51, 38.08, "swapped")
    assert A.clean_point(0.0, 0.0) == (None, None, "invalid")
    assert A.clean_point(None, "x") == (None, None, "invalid")


# --- grids ---------------------------------------------------------------------------------------------------

def test_point_in_polygon_assignment():
    cells = [("130102101002001", shapely.to_wkb(box(0, 0, 1, 1))),
             ("130102101002002", shapely.to_wkb(Polygon([(1, 0), (2, 0), (2, 1), (1, 1)])))]
    got = A.locate([(0.5, 0.5), (1.5, 0.2), (1.0, 0.5), (5.0, 5.0), (None, None), (float("nan"), 1.0)], cells)
    # on the shared edge both contain it: the smallest grid_code
    assert got == ["130102101002001", "130102101002002", "130102101002001", None, None, None]


def test_grid_boxes_cut_equal_shares_between_address_points():
    from sample.population import box_index, grid_boxes

    def rounded(boxes):
        return [tuple(round(c, 7) for c in b) for b in boxes]
    inf = float("inf")
    assert rounded(grid_boxes((114.5, 38.0), 1)) == [(-inf, inf, -inf, inf)]
    # 3 grids: a third across lng at Φ⁻¹(1/3)·σ = −0.0017229°, then the rest across lat at the centre; every cut
    # on a half-step (…5e-7) between the 1e-6° steps of the points
    assert rounded(grid_boxes((114.5, 38.0), 3)) == [(-inf, 114.4982775, -inf, inf),
                                                     (114.4982775, inf, -inf, 38.0000005),
                                                     (114.4982775, inf, 38.0000005, inf)]
    assert rounded(grid_boxes((114.5, 38.0), 4)) == [(-inf, 114.5000005, -inf, 38.0000005),
                                                     (-inf, 114.5000005, 38.0000005, inf),
                                                     (114.5000005, inf, -inf, 38.0000005),
                                                     (114.5000005, inf, 38.0000005, inf)]
    boxes = grid_boxes((114.5, 38.0), 3)
    assert [box_index(boxes, *p) for p in [(114.498277, 39.0), (114.498278, 38.0), (114.6, 38.000001)]] == [0, 1, 2]
    with pytest.raises(ValueError):
        box_index(boxes, float("nan"), 38.0)
    with pytest.raises(ValueError):
        grid_boxes((114.5, 38.0), 0)
    # equal expected households: 20,000 points of N(centre, σ²) share out within 1.5 points of 1/5 each
    import random
    rng = random.Random(6)
    boxes = grid_boxes((114.5, 38.0), 5)
    shares = Counter(box_index(boxes, round(rng.gauss(114.5, 0.004), 6), round(rng.gauss(38.0, 0.004), 6))
                     for _ in range(20_000))
    assert sorted(shares) == [0, 1, 2, 3, 4] and max(abs(n / 20_000 - 0.2) for n in shares.values()) < 0.015


def test_grid_cells_cut_community_areas_into_their_grids():
    from sample.population import grid_boxes

    district = box(114.0, 38.0, 114.1, 38.1)
    a, b = "130102101002", "130102101005"
    points = [("130102", a, 114.02, 38.02), ("130102", a, 114.03, 38.04), ("130102", a, 114.01, 38.05),
              ("130102", b, 114.08, 38.08), ("130102", b, 114.09, 38.07),
              ("130102", b, 114.01, 38.05),       # same point as one of a: the smallest community keeps it
              ("999999", "999999001001", 1.0, 1.0)]  # district unknown: ignored
    areas = G.community_areas(points, {"130102": district})
    assert sorted(areas) == [a, b]
    assert abs(areas[a].area + areas[b].area - district.area) < 1e-12 and areas[a].intersection(areas[b]).area < 1e-12
    cells = {a: [(a + f"{k + 1:03d}", bx) for k, bx in enumerate(grid_boxes((114.02, 38.04), 2))],
             b: [(b + "001", grid_boxes((114.085, 38.075), 1)[0])]}
    grids = G.grid_cells(areas, cells)
    assert sorted(grids) == [a + "001", a + "002", b + "001"]
    # a's grids: its area west and east of the cut x = 114.0200005 (half a step east of its centre)
    assert grids[a + "001"].bounds[2] == 114.0200005 == grids[a + "002"].bounds[0]
    assert (grids[a + "001"].contains(shapely.Point(114.01, 38.05))
            and grids[a + "001"].contains(shapely.Point(114.02, 38.02)))
    assert grids[a + "002"].contains(shapely.Point(114.03, 38.04))
    assert grids[a + "001"].intersection(grids[a + "002"]).area == 0.0
    assert abs(grids[a + "001"].area + grids[a + "002"].area - areas[a].area) < 1e-8   # snapped to 1e-7°
    assert grids[b + "001"].equals(shapely.set_precision(areas[b], G.PRECISION))
    alone = G.community_areas([("130102", a, 114.05, 38.05)], {"130102": district})
    assert alone[a].equals(district)


# --- Spark: match levels, grid, MERGE ------------------------------------------------------------------------

REGISTRY = [  # address_id, full_address, district_code, street_code, division_code, lng, lat, grid_code, updated_at
    ("AD01", "长安区南村镇南村社区23号楼5单元1004室", "130102", "130102101", "130102101002", "114.5", "38.5",
     "130102101002001", "2025-01-01 00:00:00"),
    ("AD02", "长安区南村镇东营村85号", "130102", "130102101", "1301021015", "38.7", "114.5",     # lost zeros, swapped
     "130102101005001", "2025-01-01 00:00:00"),
    ("AD03", "桥西区彭后街道棉七16号楼4单元1403室", "130104", "130104015", "130104015002", "0.0", "0.0",
     "130104015002001", "2025-01-01 00:00:00"),
    ("AD04", "长安区南村镇南村社区1号楼1单元101室", "130102", "130102101", "130102101002", "114.5", "38.2",
     "130102101002001", "2025-01-01 00:00:00"),
]
TEXTS = ["长安区南村镇南村社区23号楼5单元1004室",        # exact, point in grid 002's polygon
         "长安区南村镇南村社区二十三号楼五单元1004室",    # same normalised text: one row
         "南村镇东营村85号",                            # component (district omitted), swapped point repaired
         "桥西区彭后街道棉七16号楼4单元1403室",          # exact, invalid point: registry grid
         "长安区南村镇南村社区9号楼1单元101室",          # community only
         "某某小区5号", None]                           # unmatched; NULL dropped


def test_standardise_match_levels_grid_and_idempotent_merge(spark, tmp_path):
    from govlake.core import lake
    from govlake.unified import persons as unified

    registry = spark.createDataFrame(REGISTRY, "address_id string, full_address string, district_code string, "
                                     "street_code string, division_code string, lng string, lat string, "
                                     "grid_code string, updated_at string")
    texts = spark.createDataFrame([(t,) for t in TEXTS], "address string")
    cells = [("130102101002002", shapely.to_wkb(box(114.4, 38.4, 114.6, 38.6))),
             ("130102101005001", shapely.to_wkb(box(114.4, 38.6, 114.6, 38.8)))]
    rows = unified.with_content_hash(A.standardise(spark, texts, registry, GAZ, cells)).cache()
    got = {r["normalized_address"]: r for r in rows.collect()}
    assert sorted((r["normalized_address"], r["match_level"], r["address_id"], r["community_code"], r["lng"],
                   r["lat"], r["coord_status"], r["grid_code"], r["grid_method"]) for r in got.values()) == [
        ("南村镇东营村85号", "component", "AD02", "130102101005", 114.5, 38.7, "swapped", "130102101005001",
         "point_in_polygon"),
        ("某某小区5号", "unmatched", None, None, None, None, None, None, None),
        ("桥西区彭后街道棉七16号楼4单元1403室", "exact", "AD03", "130104015002", None, None, "invalid",
         "130104015002001", "registry"),
        ("长安区南村镇南村社区23号楼5单元1004室", "exact", "AD01", "130102101002", 114.5, 38.5, "ok",
         "130102101002002", "point_in_polygon"),
        ("长安区南村镇南村社区9号楼1单元101室", "community_only", None, "130102101002", None, None, None, None,
         None),
    ]
    exact = got["长安区南村镇南村社区23号楼5单元1004室"]
    assert exact["raw_address"] == "长安区南村镇南村社区23号楼5单元1004室"   # the smaller raw text
    assert exact["address_key"] == A.address_key("长安区南村镇南村社区23号楼5单元1004室")
    assert A.counts(spark.createDataFrame(list(got.values()), rows.schema)) == {
        "rows": 5, "match_level": {"exact": 2, "component": 1, "community_only": 1, "unmatched": 1},
        "unmatched": 1, "no_grid": 2,
        "grid_method": {"None": 2, "point_in_polygon": 2, "registry": 1}}
    path = str(tmp_path / "address")
    assert lake.merge_by_key(spark, rows, path, ["address_key"]) == {"inserted": 5, "updated": 0}
    first = spark.read.format("delta").load(path).collect()
    assert lake.merge_by_key(spark, rows, path, ["address_key"]) == {"inserted": 0, "updated": 0}
    assert sorted(spark.read.format("delta").load(path).collect()) == sorted(first)
    rows.unpersist()


def test_accuracy_counts_households_and_persons():
    truth = [{"household_no": "H1", "address": "长安区南村镇南村社区23号楼5单元1004室", "grid_code": "G1"},
             {"household_no": "H2", "address": "长安区南村镇东营村85号", "grid_code": "G2"},
             {"household_no": "H3", "address": "桥西区彭后街道棉七16号楼4单元1403室", "grid_code": "G3"}]
    assigned = {"长安区南村镇南村社区23号楼5单元1004室": ("G1", "point_in_polygon"),
                "长安区南村镇东营村85号": ("G9", "registry")}
    got = A.accuracy(truth, Counter({"H1": 3, "H2": 1, "H3": 2}), assigned, GAZ)
    assert got == {"households": 3, "households_correct": 1, "households_wrong": 1, "households_unassigned": 1,
                   "household_accuracy": 1 / 3, "persons": 6, "persons_correct": 3, "person_accuracy": 0.5,
                   "by_grid_method": {"None": {"households": 1, "correct": 0},
                                      "point_in_polygon": {"households": 1, "correct": 1},
                                      "registry": {"households": 1, "correct": 0}}}
