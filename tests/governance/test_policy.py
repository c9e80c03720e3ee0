"""Roles and policies: the policy file's validation, decisions per sharing type and grant, share-view SQL and the
endpoint's access file (no Spark: pure functions on small inline fixtures)."""
from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from govlake.governance import policy as pol
from govlake.governance.access import Governance, access_lines, share_views
from govlake.governance.policy import Decision, GrantInfo, PolicyError, Principal, ResourceInfo

KNOWN = {
    "unified.person": ["person_id", "id_no", "name", "phone", "district_code"],
    "marts.population_density": ["district_code", "persons"],
    "raw.hukou_persons": ["person_no", "id_no", "name"],
    "raw.health_deaths": ["death_no", "id_no", "cause"],
    "ops.validation_results": ["table", "rule_id", "failed"],
}
SEL = [{"type": "select", "isAllowed": True}]


def _res(db, table, columns=None):
    out = {"database": {"values": db}, "table": {"values": table}}
    if columns:
        out["column"] = {"values": columns}
    return out


DOC = {
    "serviceName": "t", "roles": [{"name": r} for r in pol.ROLES],
    "policies": [
        {"name": "aggregates", "policyType": 0, "resources": _res(["marts"], ["*"]),
         "policyItems": [{"roles": ["city_analyst", "district_official", "dept_analyst"], "accesses": SEL}]},
        {"name": "unified", "policyType": 0, "resources": _res(["unified"], ["person"]),
         "policyItems": [{"roles": ["city_analyst", "district_official", "dept_analyst"], "accesses": SEL}]},
        {"name": "raw", "policyType": 0, "resources": _res(["raw"], ["*"]),
         "policyItems": [{"roles": ["city_analyst", "dept_analyst"], "accesses": SEL}]},
        {"name": "oversight", "policyType": 0, "resources": _res(["ops", "raw"], ["*"]), "govlake:mandate": True,
         "policyItems": [{"roles": ["auditor"], "accesses": SEL}]},
        {"name": "ids", "policyType": 1, "resources": _res(["*"], ["*"], ["id_no"]),
         "dataMaskPolicyItems": [{"roles": ["city_analyst", "district_official", "dept_analyst"], "accesses": SEL,
                                  "dataMaskInfo": {"dataMaskType": "MASK_ID_NO"}}]},
        {"name": "names", "policyType": 1, "resources": _res(["*"], ["*"], ["name"]),
         "dataMaskPolicyItems": [{"roles": ["city_analyst", "district_official", "dept_analyst"], "accesses": SEL,
                                  "dataMaskInfo": {"dataMaskType": "MASK_NAME"}}]},
        {"name": "district", "policyType": 2, "resources": _res(["unified", "marts"], ["person", "population_*"]),
         "rowFilterPolicyItems": [{"roles": ["district_official"], "accesses": SEL,
                                   "rowFilterInfo": {"filterExpr": "district_code = '${{USER.district_code}}'"}}]},
    ],
}
POLICY = pol.parse_policy(DOC, KNOWN)
STEWARD = Principal("steward", "steward")
CITY = Principal("analyst", "city_analyst")
CHANGAN = Principal("changan", "district_official", district_code="130102")
HUKOU = Principal("hukou_analyst", "dept_analyst", department="hukou")
CODES = {"hukou": "GA-01", "health": "WJ-01"}
RES = {
    "unified.person": ResourceInfo("unified.person", "conditional", "DSJ-01", "大数据中心"),
    "marts.population_density": ResourceInfo("marts.population_density", "unconditional", "DSJ-01", "大数据中心"),
    "raw.hukou_persons": ResourceInfo("raw.hukou_persons", "conditional", "GA-01", "公安局"),
    "raw.health_deaths": ResourceInfo("raw.health_deaths", "not_shared", "WJ-01", "卫健委"),
    "ops.validation_results": ResourceInfo("ops.validation_results", "not_shared", "DSJ-01", "大数据中心"),
}
AUDITOR = Principal("auditor", "auditor")
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
COND = "unified.person is 有条件共享 (conditional)"
NEEDS = "needs an approved data request (python -m govlake.governance request --user {} --resource unified.person " \
        "--purpose ...)"
DEATHS = ("raw.health_deaths is 不予共享 (not_shared): never readable outside its provider department 卫健委 "
          "(《政务信息资源共享管理暂行办法》 art. 9)")


def _broken(path: str, value) -> dict:
    doc = copy.deepcopy(DOC)
    target: Any = doc
    keys = path.split("/")
    for key in keys[:-1]:
        target = target[int(key) if key.isdigit() else key]
    target[keys[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, message", [
    ("policies/1/resources/table/values", ["persons"], "policy 'unified': table 'persons' is in none of unified"),
    ("policies/4/resources/column/values", ["id_number"], "policy 'ids': column 'id_number' is in no table"),
    ("policies/0/resources/database/values", ["mart"], "policy 'aggregates': database 'mart' is not a catalogued"),
    ("policies/0/policyItems/0/roles", ["mayor"], "policy 'aggregates': unknown or missing roles ['mayor']"),
    ("policies/5/dataMaskPolicyItems/0/dataMaskInfo/dataMaskType", "MASK_SHOW_LAST_4",
     "policy 'names': dataMaskType 'MASK_SHOW_LAST_4' is not one of"),
    ("policies/6/rowFilterPolicyItems/0/rowFilterInfo/filterExpr", "district_code = '${{USER.city}}'",
     "policy 'district': unknown user attribute 'city'"),
])
def test_a_policy_naming_an_unknown_table_column_role_or_mask_is_refused(path, value, message):
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pol.parse_policy(_broken(path, value), KNOWN)


def test_masks_and_filters_match_first_item_with_wildcards():
    assert POLICY.mask_for("district_official", "unified.person", "id_no") == "MASK_ID_NO"
    assert POLICY.mask_for("district_official", "unified.person", "phone") is None
    assert POLICY.mask_for("steward", "unified.person", "id_no") is None
    assert POLICY.row_filter("district_official", "marts.population_density").policy == "district"
    assert POLICY.row_filter("city_analyst", "marts.population_density") is None
    assert POLICY.access_item("district_official", "raw.hukou_persons") is None


def _grant(gid="G-1", expires=NOW + timedelta(days=30), revoked=None, user="changan"):
    return GrantInfo(gid, user, "unified.person", "低保复核", expires, revoked)


@pytest.mark.parametrize("principal, table, grants, expected", [
    (STEWARD, "raw.health_deaths", [], Decision(True, "data steward")),
    (CITY, "marts.population_density", [], Decision(True, "policy aggregates")),
    (CHANGAN, "unified.person", [], Decision(False, f"{COND}: {NEEDS.format('changan')}")),
    (CHANGAN, "unified.person", [_grant()], Decision(True, "grant G-1", "G-1", NOW + timedelta(days=30), "低保复核")),
    (CHANGAN, "unified.person", [_grant(user="analyst")], Decision(False, f"{COND}: {NEEDS.format('changan')}")),
    (CHANGAN, "unified.person", [_grant(expires=NOW - timedelta(hours=1))],
     Decision(False, f"{COND}: grant G-1 was expired at 2026-12-06 03:00; file a new data request")),
    (CHANGAN, "unified.person", [_grant(revoked=NOW - timedelta(minutes=5))],
     Decision(False, f"{COND}: grant G-1 was revoked at 2026-12-06 03:55; file a new data request")),
    (CHANGAN, "raw.hukou_persons", [], Decision(False, "no access policy gives role district_official select on "
                                                       "raw.hukou_persons")),
    (HUKOU, "raw.hukou_persons", [], Decision(True, "own department")),
    (HUKOU, "raw.health_deaths", [], Decision(False, DEATHS)),
    (CITY, "raw.health_deaths", [], Decision(False, DEATHS)),
    (AUDITOR, "ops.validation_results", [], Decision(True, "mandate")),
    (AUDITOR, "raw.health_deaths", [], Decision(True, "mandate")),
    (AUDITOR, "unified.person", [], Decision(False, "no access policy gives role auditor select on unified.person")),
])
def test_decisions_follow_sharing_type_grants_and_department(principal, table, grants, expected):
    assert pol.decide(principal, RES[table], POLICY, grants, NOW, CODES) == expected


def _mask(mask, column, data_type):
    return f"{mask}({column})"


def test_share_view_sql_masks_and_filters_per_role_and_user():
    columns = [(c, "string") for c in KNOWN["unified.person"]]
    assert pol.view_sql(CHANGAN, "unified.person", columns, POLICY, mask_expr=_mask) == (
        "SELECT `person_id`, MASK_ID_NO(`id_no`) AS `id_no`, MASK_NAME(`name`) AS `name`, `phone`, `district_code` "
        "FROM unified.person WHERE (district_code = '130102')")
    assert pol.view_sql(CITY, "unified.person", columns, POLICY, mask_expr=_mask) == (
        "SELECT `person_id`, MASK_ID_NO(`id_no`) AS `id_no`, MASK_NAME(`name`) AS `name`, `phone`, `district_code` "
        "FROM unified.person")
    own = [(c, "string") for c in KNOWN["raw.hukou_persons"]]
    assert pol.view_sql(HUKOU, "raw.hukou_persons", own, POLICY, own=True, mask_expr=_mask) == (
        "SELECT `person_no`, `id_no`, `name` FROM raw.hukou_persons")
    with pytest.raises(PolicyError, match="policy 'district': user nobody has no district_code"):
        pol.view_sql(Principal("nobody", "district_official"), "unified.person", columns, POLICY, mask_expr=_mask)


def test_access_file_lines_and_share_views_per_scope():
    gov = Governance(POLICY, {p.name: p for p in (STEWARD, CHANGAN, HUKOU)}, RES, CODES,
                     {t: [(c, "string") for c in cols] for t, cols in KNOWN.items()})
    lines = access_lines(gov, [_grant()], NOW)
    expires = int((NOW + timedelta(days=30)).timestamp() * 1000)
    assert lines[1:] == [
        "G\tmarts", "G\tops", "G\traw", "G\tunified",
        "U\tchangan\tdistrict_official\tshare_district_130102",
        "U\thukou_analyst\tdept_analyst\tshare_dept_hukou",
        "U\tsteward\tsteward\t-",
        "D\tchangan\tmarts.population_density\tallow\t0\t-\tpolicy aggregates",
        f"D\tchangan\tunified.person\tallow\t{expires}\tG-1\tpurpose: 低保复核",
        "D\thukou_analyst\tmarts.population_density\tallow\t0\t-\tpolicy aggregates",
        f"D\thukou_analyst\traw.health_deaths\trefuse\t0\t-\t{DEATHS}",
        "D\thukou_analyst\traw.hukou_persons\tallow\t0\t-\town department",
        f"D\thukou_analyst\tunified.person\trefuse\t0\t-\t{COND}: {NEEDS.format('hukou_analyst')}",
    ]
    views = share_views(gov, {"unified.person": gov.columns["unified.person"],
                              "raw.hukou_persons": gov.columns["raw.hukou_persons"]})
    assert sorted(views) == ["share_dept_hukou.raw__hukou_persons", "share_dept_hukou.unified__person",
                             "share_district_130102.unified__person"]
    assert views["share_dept_hukou.raw__hukou_persons"] == "SELECT `person_no`, `id_no`, `name` FROM raw.hukou_persons"


def test_ranger_export_has_custom_masks_per_user_filters_and_grant_schedules():
    principals = {p.name: p for p in (STEWARD, CHANGAN, Principal("qiaoxi", "district_official", "130104"))}
    doc = pol.ranger_export(POLICY, principals, [_grant(), _grant("G-2", revoked=NOW)], NOW)
    ids = next(p for p in doc["policies"] if p["name"] == "ids")["dataMaskPolicyItems"][0]["dataMaskInfo"]
    assert ids["dataMaskType"] == "CUSTOM" and "{col}" in ids["valueExpr"]
    rows = next(p for p in doc["policies"] if p["name"] == "district")["rowFilterPolicyItems"]
    assert [(i["users"], i["rowFilterInfo"]["filterExpr"]) for i in rows] == [
        (["changan"], "district_code = '130102'"), (["qiaoxi"], "district_code = '130104'")]
    [grant] = [p for p in doc["policies"] if p["name"].startswith("grant-")]
    assert grant["policyItems"][0]["users"] == ["changan"]
    assert grant["validitySchedules"] == [{"startTime": "2026/12/06 04:00:00", "endTime": "2027/01/05 04:00:00",
                                           "timeZone": "UTC"}]
    assert {r["name"]: [u["name"] for u in r["users"]] for r in doc["roles"]}["district_official"] == [
        "changan", "qiaoxi"]


def test_the_policy_file_masks_every_personal_identifier_and_filters_district_rows():
    """On the real catalog and policy: every column of :data:`PII_COLUMNS` (and every golden-record key) is masked
    for every role but the steward wherever the role may read it; a district official reads no person-level table
    without a row filter."""
    from govlake.governance.access import load_governance
    from govlake.governance.masking import PII_COLUMNS

    gov = load_governance()
    unmasked = []
    for table, columns in gov.columns.items():
        for role in ("city_analyst", "district_official", "dept_analyst", "auditor"):
            if gov.policy.access_item(role, table) is None:
                continue
            unmasked += [f"{role}:{table}.{c}" for c, _ in columns
                         if c in PII_COLUMNS and gov.policy.mask_for(role, table, c) is None]
    assert unmasked == []
    person_level = [t for t in gov.columns if t.split(".")[0] in ("unified", "raw", "staging", "quarantine")]
    unfiltered = [t for t in person_level if gov.policy.access_item("district_official", t) is not None
                  and gov.policy.row_filter("district_official", t) is None]
    assert unfiltered == []
    assert gov.policy.mask_for("city_analyst", "unified.person", "person_id") == "MASK_HASH"
