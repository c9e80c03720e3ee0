"""Day N+1 from day N: births, deaths, moves between districts, marriages, new and closed grid events, new
one-window applications and corrected records, applied to the delivered tables of day N.

Every change of day ``D`` has ``updated_at`` on ``D`` (Asia/Shanghai), so a watermark window over ``D`` sees
exactly the changes; deletions (hukou.persons of the dead, hukou.households emptied by a marriage) are hard
deletes, which watermarks cannot see. Each change is one row of ``truth/changes.csv``. The draws come from
``"<seed>:day:<D>"`` streams and a Faker seeded with the same string, so day N is identical whether or not later
days are generated.

Daily volumes are exaggerated so that small samples show every kind: births, deaths and moves
max(1, round(residents / 1000)) each, marriages max(1, round(residents / 2000)), corrections max(1, 10% of the
corrigible hukou faults), new events max(1, round(events / 84)), closures of open events max(1, a quarter of
them), new applications max(1, round(residents / 300)).
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from bson import ObjectId
from faker import Faker

from sample.departments import LOCAL, _utc, short_community_name, ts
from sample.faults import Fault
from sample.more_departments import (
    address_row,
    application_docs,
    birth_row,
    death_row,
    new_id,
    parents_of,
)
from sample.population import (
    HOUR_WEIGHTS,
    REL_DAUGHTER,
    REL_HEAD,
    REL_SON,
    REL_SPOUSE,
    Household,
    Person,
    Population,
)

CHANGE_COLUMNS = ("day", "change_kind", "source", "table", "row_key", "op", "person_key", "detail")
#: hukou.persons fault kinds a department corrects on a later day (the true ID is restored).
CORRIGIBLE = ("id_bad_checksum", "id_fullwidth", "id_lowercase_x", "id_null", "id_float_mangled")


@dataclass
class Change:
    """One row of truth/changes.csv: op is 'insert', 'update' or 'delete'."""

    day: str
    change_kind: str
    source: str
    table: str
    row_key: str
    op: str
    person_key: str
    detail: str = ""


def _time_on(rng: random.Random, day: date) -> datetime:
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    return datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)))


def truth_row(p: Person, hh: Household) -> tuple:
    """A truth/persons.csv row of ``p`` living in ``hh``."""
    return (p.person_no, p.id_no, p.name, p.sex_code, p.birth.isoformat(), p.ethnic_code, p.household_no,
            p.community_code, p.district_code, f"{hh.lng:.6f}", f"{hh.lat:.6f}", p.education or "",
            p.marital_status or "", p.registration_type)


def _person_row(p: Person, updated: datetime) -> dict[str, Any]:
    return {"person_no": p.person_no, "id_no": p.id_no, "name": p.name, "sex_code": p.sex_code,
            "birth_date": f"{p.birth:%Y%m%d}", "ethnic_code": p.ethnic_code, "household_no": p.household_no,
            "relation_code": p.relation_code, "community_code": p.community_code, "address": p.address,
            "phone": p.phone, "updated_at": ts(updated), "education": p.education,
            "marital_status": p.marital_status, "registration_type": p.registration_type}


def apply_day(day: date, seed: int, pop: Population, tables: dict[str, list[dict[str, Any]]],
              faults: list[Fault], counters: dict[str, Any]) -> list[Change]:
    """Apply the changes of ``day`` to ``pop`` (the truth: households and members) and to the delivered
    ``tables`` ({"hukou.persons": rows, "hukou.households", "hukou.residence_changes", "health.births",
    "health.deaths", "address.standard_address", "wangge.events", "zhengwu.applications"}) in place.

    ``counters`` holds the next sequence numbers ({"person", "cert", "death", "address", "event", "move"}) and is
    advanced; its "_corrected" entry is the set of person_no already corrected. A move appends one
    hukou.residence_changes row per member ('QY' + 8 digits from ``counters["move"]``, from the old to the new
    community, move_date = ``day``, change_type '市内迁移', updated_at the move's time; no extra random draws).
    ``faults`` (of day N) tells which hukou rows can be corrected. Returns the changes in order.
    """
    rng = random.Random(f"{seed}:day:{day}")
    fake = Faker("zh_CN")
    fake.seed_instance(f"{seed}:day:{day}")
    d = day.isoformat()
    changes: list[Change] = []
    touched: set[str] = set()  # household_no touched today
    persons = tables["hukou.persons"]
    used = {p.id_no for h in pop.households for p in h.members}
    n_res = sum(len(h.members) for h in pop.households)

    index: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in persons:
        index.setdefault(("hukou.persons", r["person_no"]), []).append(r)
    for r in tables["hukou.households"]:
        index.setdefault(("hukou.households", r["household_no"]), []).append(r)

    def rows_of(table: str, key: str, value: str) -> list[dict[str, Any]]:
        return index.get((table, value), [])

    def update_person(p: Person, kind: str, upd: datetime, **values: Any) -> None:
        for r in rows_of("hukou.persons", "person_no", p.person_no):
            r.update(values, updated_at=ts(upd))
        changes.append(Change(d, kind, "hukou", "persons", p.person_no, "update", p.person_no))

    # ---- births: a child of a head/spouse mother aged 20–45
    mothers = [(h, m) for h in pop.households for m in h.members
               if m.sex_code == "2" and m.relation_code in (REL_HEAD, REL_SPOUSE) and 20 <= m.age <= 45]
    for _ in range(max(1, round(n_res / 1000)) if mothers else 0):
        hh, mother = mothers[rng.randrange(len(mothers))]
        if hh.household_no in touched:
            continue
        touched.add(hh.household_no)
        sex = "1" if rng.random() < 0.51 else "2"
        father = next((m for m in hh.members if m.sex_code == "1" and m.relation_code in (REL_HEAD, REL_SPOUSE)), None)
        surname = (father or mother).name[0] if "·" not in mother.name else None
        given = fake.first_name_male() if sex == "1" else fake.first_name_female()
        name = f"{surname}{given}" if surname else f"{given}·{(father or mother).name.split('·')[0]}"
        child = Person(person_no=f"HK{counters['person']:08d}", id_no=new_id(rng, used, hh.district.code, day, sex),
                       name=name, sex_code=sex, birth=day, age=0, ethnic_code=hh.ethnic_code,
                       household_no=hh.household_no, relation_code=REL_SON if sex == "1" else REL_DAUGHTER,
                       community_code=hh.community.code, district_code=hh.district.code, address=hh.address,
                       phone=(father or mother).phone, updated_at=_time_on(rng, day),
                       registration_type="流动" if hh.is_floating else "户籍")
        counters["person"] += 1
        hh.members.append(child)
        persons.append(_person_row(child, child.updated_at))
        index[("hukou.persons", child.person_no)] = [persons[-1]]
        changes.append(Change(d, "birth", "hukou", "persons", child.person_no, "insert", child.person_no))
        m, f = parents_of(hh, child)
        cert = f"P{counters['cert']:09d}"
        counters["cert"] += 1
        tables["health.births"].append(birth_row(rng, cert, hh, child, m, f, _time_on(rng, day)))
        changes.append(Change(d, "birth", "health", "births", cert, "insert", child.person_no))

    # ---- deaths: a non-head member aged 70+ (else 60+)
    dead: set[str] = set()
    old = [(h, p) for h in pop.households if h.household_no not in touched for p in h.members
           if p.relation_code != REL_HEAD and p.age >= 70] or \
          [(h, p) for h in pop.households if h.household_no not in touched for p in h.members
           if p.relation_code != REL_HEAD and p.age >= 60]
    for _ in range(max(1, round(n_res / 1000))):
        old = [(h, p) for h, p in old if h.household_no not in touched]
        if not old:
            break
        hh, p = old[rng.randrange(len(old))]
        touched.add(hh.household_no)
        hh.members.remove(p)
        dead.add(p.person_no)
        changes.append(Change(d, "death", "hukou", "persons", p.person_no, "delete", p.person_no))
        key = f"SW{counters['death']:08d}"
        counters["death"] += 1
        tables["health.deaths"].append(death_row(rng, key, p.name, p.id_no, p.sex_code, p.birth, day,
                                                 hh.community.code, _time_on(rng, day)))
        changes.append(Change(d, "death", "health", "deaths", key, "insert", p.person_no))
    if dead:
        persons[:] = [r for r in persons if r["person_no"] not in dead]

    # ---- moves between districts: a whole household to a community of another district
    movable = [h for h in pop.households if h.members]
    for _ in range(max(1, round(n_res / 1000))):
        movable = [h for h in movable if h.household_no not in touched]
        if not movable or len(pop.districts) < 2:
            break
        hh = movable[rng.randrange(len(movable))]
        touched.add(hh.household_no)
        target = rng.choice([x for x in pop.districts if x.code != hh.district.code])
        community = rng.choice(target.communities)
        rng.choice(pop.community_grids(target, community))  # kept draw: the grid follows from the new point
        street = target.streets[community.street_code]
        place = f"{target.name}{street}{short_community_name(community.name)}"
        hh.address = (f"{place}{rng.randint(1, 320)}号" if community.is_village else
                      f"{place}{rng.randint(1, 36)}号楼{rng.randint(1, 6)}单元"
                      f"{rng.randint(1, 18)}{rng.randint(1, 4):02d}室")
        hh.district, hh.community, hh.street_name = target, community, street
        hh.lng, hh.lat = pop.point_in(target, near=pop.anchor(target, community))
        hh.grid = pop.grid_at(community, hh.lng, hh.lat)
        upd = _time_on(rng, day)
        hh.updated_at = upd
        moves = tables.setdefault("hukou.residence_changes", [])
        for p in hh.members:
            key = f"QY{counters.setdefault('move', 10_000_000):08d}"
            counters["move"] += 1
            moves.append({"change_no": key, "person_no": p.person_no, "id_no": p.id_no,
                          "from_community_code": p.community_code, "to_community_code": community.code,
                          "move_date": f"{day:%Y%m%d}", "change_type": "市内迁移", "updated_at": ts(upd)})
            changes.append(Change(d, "move", "hukou", "residence_changes", key, "insert", p.person_no))
            p.community_code, p.district_code, p.address = community.code, target.code, hh.address
            update_person(p, "move", upd, community_code=community.code, address=hh.address)
        for r in rows_of("hukou.households", "household_no", hh.household_no):
            r.update(community_code=community.code, address=hh.address, updated_at=ts(upd))
        changes.append(Change(d, "move", "hukou", "households", hh.household_no, "update", hh.members[0].person_no))
        key = f"AD{counters['address']:010d}"
        counters["address"] += 1
        tables["address.standard_address"].append(address_row(hh, key, upd))
        changes.append(Change(d, "move", "address", "standard_address", key, "insert", hh.members[0].person_no))

    # ---- marriages: two single heads of one-person households (opposite sex, 22–45); the wife moves in
    singles = [h for h in pop.households if len(h.members) == 1 and 22 <= h.members[0].age <= 45]
    gone: set[str] = set()
    for _ in range(max(1, round(n_res / 2000))):
        singles = [h for h in singles if h.household_no not in touched]
        men = [h for h in singles if h.members[0].sex_code == "1"]
        women = [h for h in singles if h.members[0].sex_code == "2"]
        if not men or not women:
            break
        his, hers = men[rng.randrange(len(men))], women[rng.randrange(len(women))]
        touched.update((his.household_no, hers.household_no))
        wife = hers.members.pop()
        gone.add(hers.household_no)
        wife.household_no, wife.relation_code = his.household_no, REL_SPOUSE
        wife.community_code, wife.district_code, wife.address = his.community.code, his.district.code, his.address
        his.members.append(wife)
        upd = _time_on(rng, day)
        husband = his.members[0]
        wife.marital_status = husband.marital_status = "20"  # GB/T 2261.2 已婚
        wife.registration_type = husband.registration_type
        update_person(wife, "marriage", upd, household_no=his.household_no, relation_code=REL_SPOUSE,
                      community_code=his.community.code, address=his.address, marital_status="20",
                      registration_type=husband.registration_type)
        update_person(husband, "marriage", upd, marital_status="20")
        changes.append(Change(d, "marriage", "hukou", "households", hers.household_no, "delete", wife.person_no))

    if gone:
        pop.households[:] = [h for h in pop.households if h.household_no not in gone]
        tables["hukou.households"][:] = [r for r in tables["hukou.households"] if r["household_no"] not in gone]

    # ---- corrections: faulted hukou IDs set right
    fixed = {(f.row_key) for f in faults if f.source == "hukou" and f.fault_kind in CORRIGIBLE}
    alive = {p.person_no: p for h in pop.households if h.household_no not in touched for p in h.members}
    candidates = sorted(k for k in fixed if k in alive and k not in counters.setdefault("_corrected", set()))
    for k in rng.sample(candidates, min(len(candidates), max(1, round(len(fixed) / 10)))):
        p = alive[k]
        counters["_corrected"].add(k)
        update_person(p, "correction", _time_on(rng, day), id_no=p.id_no)
        changes[-1].detail = "id_no restored"

    # ---- grid events: new ones, and open ones closed
    events = tables["wangge.events"]
    open_docs = [e for e in events if e.get("status") != "已结案" and isinstance(e.get("status_history"), list)]
    for e in rng.sample(open_docs, min(len(open_docs), max(1, len(open_docs) // 4))):
        at = _time_on(rng, day)
        if e["status"] == "已受理":
            e["status_history"].append({"status": "处理中", "at": _utc(at - timedelta(seconds=1))})
        e["status_history"].append({"status": "已结案", "at": _utc(at)})
        e["status"], e["closed_at"], e["updated_at"] = "已结案", _utc(at), _utc(at)
        changes.append(Change(d, "event_closed", "wangge", "events", e["event_no"], "update", ""))
    templates = [e for e in events
                 if isinstance(e.get("category"), dict) and isinstance(e["location"].get("grid_code"), str)]
    for _ in range(max(1, round(len(events) / 84)) if templates else 0):
        t = templates[rng.randrange(len(templates))]
        at = _utc(_time_on(rng, day))
        doc = {"_id": ObjectId(struct.pack(">I", int(at.timestamp())) + rng.getrandbits(64).to_bytes(8, "big")),
               "event_no": f"GE{counters['event']:08d}", "reported_at": at, "reporter": dict(t["reporter"]),
               "location": dict(t["location"]), "category": dict(t["category"]), "description": t["description"],
               "status": "已受理", "status_history": [{"status": "已受理", "at": at}], "closed_at": None,
               "updated_at": at}
        counters["event"] += 1
        events.append(doc)
        changes.append(Change(d, "event_new", "wangge", "events", doc["event_no"], "insert", ""))

    # ---- one-window applications submitted today
    docs, links = application_docs(pop, seed, day, fake, stream=f"day:{day}:applications", first_day=day,
                                   n=max(1, round(n_res / 300)))
    for doc, link in zip(docs, links, strict=False):
        tables["zhengwu.applications"].append(doc)
        changes.append(Change(d, "application_new", "zhengwu", "applications", doc["app_no"], "insert", link[4]))
    return changes


def local_day(value: Any) -> date | None:
    """The Asia/Shanghai date of an ``updated_at`` ('YYYY-MM-DD HH:MM:SS' local text or an aware datetime)."""
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).date() if value.tzinfo else value.date()
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return None
