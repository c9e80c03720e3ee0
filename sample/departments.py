"""Department records built from the synthetic population, in each department's own schema and formats.

* public security household registry (hukou): ``persons``, ``households`` and ``residence_changes`` (户口迁移登记)
  rows;
* civil affairs (civil): ``subsistence_allowance`` (低保) cases, ``marriages`` (结婚登记) and ``elderly_subsidy``
  (高龄津贴);
* grid-management centre (wangge): ``events`` documents;
* government service centre (zhengwu): a subset of the real message-board file.

Rows are plain dicts with the exact column names of docs/sample_municipality.md; faults come later
(:mod:`sample.faults`).
"""
from __future__ import annotations

import random
import struct
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

from bson import ObjectId

from govlake.core.config import TIME_ZONE
from sample.population import (
    HOUR_CUM,
    HOURS,
    Population,
    random_local_time,
    shift_years,
    short_community_name,
)

LOCAL = ZoneInfo(TIME_ZONE)
#: Column order of each SQL table (all TEXT unless noted in the writers' DDL).
PERSON_COLUMNS = ("person_no", "id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no",
                  "relation_code", "community_code", "address", "phone", "updated_at",
                  "education", "marital_status", "registration_type")
HOUSEHOLD_COLUMNS = ("household_no", "head_person_no", "community_code", "address", "household_type",
                     "registered_date", "updated_at")
RESIDENCE_CHANGE_COLUMNS = ("change_no", "person_no", "id_no", "from_community_code", "to_community_code",
                            "move_date", "change_type", "updated_at")
#: Share of households with one earlier move (户口迁移登记) from another district of the city, and how far back.
MOVED_SHARE, MOVE_WINDOW_YEARS = 0.03, 10
ALLOWANCE_COLUMNS = ("case_no", "applicant_id_no", "applicant_name", "sex", "birth_date", "community_code",
                     "family_size", "monthly_amount", "approved_date", "status", "updated_at")
MARRIAGE_COLUMNS = ("cert_no", "husband_name", "husband_id_no", "husband_sex", "husband_birth_date", "wife_name",
                    "wife_id_no", "wife_sex", "wife_birth_date", "register_date", "registry_office",
                    "community_code", "updated_at")
#: Legal minimum marriage ages, men / women (Civil Code of the PRC, art. 1047).
MARRIAGE_AGE_MEN, MARRIAGE_AGE_WOMEN = 22, 20
#: Share of households' head + spouse pairs known to the city's marriage registry (the others married elsewhere).
MARRIAGE_REGISTERED_SHARE = 0.8
ELDERLY_COLUMNS = ("subsidy_no", "id_no", "name", "sex", "birth_date", "age", "monthly_amount", "start_date",
                   "bank_account", "community_code", "status", "updated_at")
#: 高龄津贴 monthly amounts by age band, yuan: (first age, amount). Illustrative levels of the kind Hebei's cities
#: pay from age 80 (not an official schedule).
ELDERLY_BANDS = ((100, Decimal("500.00")), (90, Decimal("200.00")), (80, Decimal("100.00")))
#: Share of household heads receiving 低保, and the extra weight of heads aged 60+.
ALLOWANCE_SHARE, ELDERLY_WEIGHT = 0.03, 3.0
#: Monthly allowance per family member, yuan (the gap to Shijiazhuang's 2024 standard of about 900 yuan).
ALLOWANCE_PER_PERSON = (180.0, 780.0)
EVENT_WINDOW_DAYS = 84


def ts(value: datetime) -> str:
    """'YYYY-MM-DD HH:MM:SS' local wall time (seconds precision; the generator never draws microseconds)."""
    if value.microsecond or value.tzinfo is not None or value.year < 1000:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.isoformat(" ")


def zh_date(value: date) -> str:
    """Chinese date text without zero padding, e.g. '1949年12月31日'."""
    return f"{value.year}年{value.month}月{value.day}日"


def person_rows(pop: Population) -> list[dict[str, Any]]:
    """hukou.persons rows of every resident (true values), in registry order. The last three columns:
    ``education`` GB/T 4658-2006 code or None, ``marital_status`` GB/T 2261.2-2003 code or None,
    ``registration_type`` '户籍' | '流动' (see :mod:`sample.attributes`)."""
    return [{"person_no": p.person_no, "id_no": p.id_no, "name": p.name, "sex_code": p.sex_code,
             "birth_date": f"{p.birth:%Y%m%d}", "ethnic_code": p.ethnic_code, "household_no": p.household_no,
             "relation_code": p.relation_code, "community_code": p.community_code, "address": p.address,
             "phone": p.phone, "updated_at": ts(p.updated_at), "education": p.education,
             "marital_status": p.marital_status, "registration_type": p.registration_type} for p in pop.persons]


def household_rows(pop: Population) -> list[dict[str, Any]]:
    """hukou.households rows (household_type always '家庭户')."""
    return [{"household_no": h.household_no, "head_person_no": h.members[0].person_no,
             "community_code": h.community.code, "address": h.address, "household_type": "家庭户",
             "registered_date": f"{h.registered_date:%Y%m%d}", "updated_at": ts(h.updated_at)}
            for h in pop.households]


def residence_change_rows(pop: Population, seed: int, logical_date: date) -> tuple[list[dict[str, Any]], list[tuple]]:
    """hukou.residence_changes (户口迁移登记) of day N: for round(3% of households) households (at least 1 when
    there are households and at least two districts), drawn without replacement, one earlier move of the
    household from a community of another district of the city to its current community, one row per member
    born on or before the move date (the head always is), in household then member order.

    change_no 'QY' + 8 digits (PRIMARY KEY, sequential from a seeded start); person_no 'HK…'; id_no the true
    18-digit GB 11643 ID; from_community_code / to_community_code 12 digits (to = the member's community on
    ``logical_date``); move_date 'YYYYMMDD' uniform in [max(registered_date + 1 day, logical_date − 10 years),
    logical_date − 1 day] (registered_date is at least 30 days before the logical date); change_type '市内迁移'
    (a move inside the city; '迁入' / '迁出' are the registry's other values, not generated); updated_at local
    'YYYY-MM-DD HH:MM:SS' between the move date and ``logical_date``. Seeded stream ``"<seed>:hukou:moves"``
    (drawn after every other table, so no other output depends on it). Returns (rows, links): links are
    truth/links.csv rows with role 'mover'.
    """
    rng = random.Random(f"{seed}:hukou:moves")
    households = pop.households
    if not households or len(pop.districts) < 2:
        return [], []
    n = min(len(households), max(1, round(MOVED_SHARE * len(households))))
    chosen = sorted(rng.sample(range(len(households)), n))
    no = rng.randint(10_000_000, 40_000_000)
    last = logical_date - timedelta(days=1)
    rows, links = [], []
    for i in chosen:
        hh = households[i]
        first = max(hh.registered_date + timedelta(days=1), shift_years(logical_date, -MOVE_WINDOW_YEARS))
        moved = date.fromordinal(rng.randint(min(first, last).toordinal(), last.toordinal()))
        origin = rng.choice([d for d in pop.districts if d.code != hh.district.code])
        source = rng.choice(origin.communities)
        for p in hh.members:
            if p.birth > moved:
                continue
            key = f"QY{no:08d}"
            no += 1
            rows.append({"change_no": key, "person_no": p.person_no, "id_no": p.id_no,
                         "from_community_code": source.code, "to_community_code": p.community_code,
                         "move_date": f"{moved:%Y%m%d}", "change_type": "市内迁移",
                         "updated_at": ts(random_local_time(rng, moved, logical_date))})
            links.append(("hukou", "residence_changes", key, "mover", p.person_no))
    return rows, links


def allowance_rows(pop: Population, seed: int, logical_date: date) -> list[dict[str, Any]]:
    """civil.subsistence_allowance cases: ~3% of household heads (at least 3 when there are 3 heads), drawn
    with weight 3 for heads aged 60+ (weighted sampling without replacement, Efraimidis–Spirakis keys); at
    least one applicant is born before 1984 when such a head exists (so the id_15_digit fault is possible).

    monthly_amount is a ``Decimal`` with 2 decimals (yuan); family_size an ``int``; dates in Chinese text.
    """
    rng = random.Random(f"{seed}:civil")
    heads = list(pop.households)
    n = min(len(heads), max(3, round(ALLOWANCE_SHARE * len(heads))))
    keyed = []
    for i, h in enumerate(heads):
        weight = ELDERLY_WEIGHT if h.members[0].age >= 60 else 1.0
        keyed.append((rng.random() ** (1.0 / weight), i))
    ranked = [i for _, i in sorted(keyed, reverse=True)]
    chosen = ranked[:n]
    # keep at least one applicant old enough to hold a legacy 15-digit ID (born before 1984), when one exists
    if chosen and not any(heads[i].members[0].birth.year < 1984 for i in chosen):
        older = [i for i in ranked[n:] if heads[i].members[0].birth.year < 1984]
        if older:
            chosen[-1] = older[0]
    chosen.sort()
    first_no = rng.randint(10_000_000, 40_000_000)
    rows = []
    for k, i in enumerate(chosen):
        h = heads[i]
        head = h.members[0]
        earliest = max(shift_years(logical_date, -8), shift_years(head.birth, 18), date(2010, 1, 1))
        latest = logical_date - timedelta(days=20)
        approved = date.fromordinal(rng.randint(min(earliest, latest).toordinal(), latest.toordinal()))
        status = "停保" if rng.random() < 0.12 else "在保"
        amount = Decimal(f"{rng.uniform(*ALLOWANCE_PER_PERSON) * len(h.members):.2f}")
        rows.append({
            "case_no": f"DB{first_no + k:08d}", "applicant_id_no": head.id_no, "applicant_name": head.name,
            "sex": "男" if head.sex_code == "1" else "女", "birth_date": zh_date(head.birth),
            "community_code": h.community.code, "family_size": len(h.members), "monthly_amount": amount,
            "approved_date": zh_date(approved), "status": status,
            "updated_at": ts(random_local_time(rng, approved, logical_date))})
    return rows


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=LOCAL).astimezone(UTC)


def event_docs(pop: Population, seed: int, logical_date: date, categories: list[tuple[str, str, str]],
               labeled: list[dict[str, str]], messages: list[list[str]]) -> list[dict[str, Any]]:
    """wangge.events documents: round(residents / 10) events reported in the 84 days ending on ``logical_date``.

    Days are weighted 1.0 on weekdays and 0.5 at weekends, hours by working hours. Each event is at a point near
    the centre of a random household's community (σ = 0.003°), in the grid whose cell contains that point
    (:meth:`Population.grid_at`), reported by that grid's worker. Category: 80% from the l1s of
    the labeled sample (weighted by its counts, description a labeled text of that l1), else any tree row
    (description any real message). Status history 已受理 → 处理中 (10 min–24 h later) → 已结案 (2 h–14 days
    later), cut at the end of ``logical_date``. All datetimes timezone-aware UTC; ``_id`` is an ObjectId whose
    timestamp is ``reported_at`` and whose other 8 bytes come from the seed.
    """
    rng = random.Random(f"{seed}:wangge")
    n = round(pop.residents / 10)
    if not pop.households or n == 0:
        return []
    tree: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for c in categories:
        tree[c[0]].append(c)
    texts: dict[str, list[str]] = defaultdict(list)
    for m in labeled:
        if m["一级分类"] in tree:
            texts[m["一级分类"]].append(m["留言详情"].strip())
    l1s = sorted(texts)
    l1_weights = [len(texts[k]) for k in l1s]
    all_texts = [r[4].strip() for r in messages]
    first_day = logical_date - timedelta(days=EVENT_WINDOW_DAYS - 1)
    days = [first_day + timedelta(days=k) for k in range(EVENT_WINDOW_DAYS)]
    day_weights = [0.5 if d.weekday() >= 5 else 1.0 for d in days]
    end = datetime.combine(logical_date, time(23, 59, 59))
    day_cum, l1_cum = list(accumulate(day_weights)), list(accumulate(l1_weights))  # same draws as weights=

    drafts = []
    for _ in range(n):
        day = rng.choices(days, cum_weights=day_cum)[0]
        hour = rng.choices(HOURS, cum_weights=HOUR_CUM)[0]
        reported = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)))
        hh = pop.households[rng.randrange(len(pop.households))]
        if rng.random() < 0.8:
            l1 = rng.choices(l1s, cum_weights=l1_cum)[0]
            cat = rng.choice(tree[l1])
            description = rng.choice(texts[l1])
        else:
            cat = rng.choice(categories)
            description = rng.choice(all_texts)
        history = [("已受理", reported)]
        t1 = reported + timedelta(seconds=rng.randint(600, 86_400))
        t2 = t1 + timedelta(seconds=rng.randint(7_200, 14 * 86_400))
        if t1 <= end:
            history.append(("处理中", t1))
            if t2 <= end:
                history.append(("已结案", t2))
        lng, lat = pop.point_in(hh.district, near=pop.anchor(hh.district, hh.community), spread=0.003)
        grid = pop.grid_at(hh.community, lng, lat)
        base = f"{hh.district.name}{hh.street_name}{short_community_name(hh.community.name)}"
        if hh.community.is_village:
            place = f"{base}{rng.randint(1, 320)}号附近"
        else:
            place = f"{base}{rng.randint(1, 36)}号楼附近"
        drafts.append((reported, hh, grid, cat, description, history, lng, lat, place, rng.getrandbits(64)))

    drafts.sort(key=lambda d: d[0])
    first_no = rng.randint(10_000_000, 40_000_000)
    docs = []
    for k, (reported, hh, grid, cat, description, history, lng, lat, place, tail) in enumerate(drafts):
        reported_utc = _utc(reported)
        oid = ObjectId(struct.pack(">I", int(reported_utc.timestamp())) + tail.to_bytes(8, "big"))
        status, last = history[-1]
        docs.append({
            "_id": oid,
            "event_no": f"GE{first_no + k:08d}",
            "reported_at": reported_utc,
            "reporter": {"worker_id": grid.worker_id, "name": grid.worker_name},
            "location": {"community_code": hh.community.code, "grid_code": grid.grid_code, "address": place,
                         "lng": lng, "lat": lat},
            "category": {"l1": cat[0], "l2": cat[1], "l3": cat[2]},
            "description": description,
            "status": status,
            "status_history": [{"status": s, "at": _utc(t)} for s, t in history],
            "closed_at": _utc(last) if status == "已结案" else None,
            "updated_at": _utc(last),
        })
    return docs


def hotline_subset(header: list[str], rows: list[list[str]], residents: int, seed: int) -> list[list[str]]:
    """A seeded subset of the real message-board rows, verbatim, in source order: round(residents / 10) rows
    (at least 1), of which ~5% (at least 1) have the source's odd 'YYYY-MM-DD HH:MM:SS' 留言时间 form.

    The source has no unparsable 留言时间 (129 of 4,326 rows use the dashed form instead of '2019/2/28 11:25:05').
    """
    rng = random.Random(f"{seed}:zhengwu")
    n = min(len(rows), max(1, round(residents / 10)))
    time_col = header.index("留言时间")
    odd = [i for i, r in enumerate(rows) if "-" in r[time_col]]
    usual = [i for i, r in enumerate(rows) if "-" not in r[time_col]]
    k_odd = min(len(odd), max(1, round(n * 0.05)))
    picked = rng.sample(odd, k_odd) + rng.sample(usual, min(len(usual), n - k_odd))
    return [rows[i] for i in sorted(picked)]


def marriage_rows(pop: Population, seed: int, logical_date: date) -> tuple[list[dict[str, Any]], list[tuple]]:
    """civil.marriages: the marriage registrations (结婚登记) of the city's registry, one per household head +
    spouse (relation '10') pair, 80% of them (the others registered elsewhere; none when one of them is under the
    legal age), in household order.

    cert_no 'J' + 6-digit district code + '-' + registration year + '-' + 6-digit sequence (PRIMARY KEY);
    husband_* / wife_*: name, 18-digit ID, sex '男' / '女', birth date in Chinese text ('1990年5月1日', no zero
    padding); register_date Chinese text, uniform in the 10 years from the day both reached the legal age (men 22,
    women 20, Civil Code art. 1047; not before 1980-01-01), not after the day before ``logical_date``; registry_office
    '<district>民政局婚姻登记处'; community_code 12 digits; updated_at 'YYYY-MM-DD HH:MM:SS' local, after the
    registration. Seeded stream ``"<seed>:civil:marriages"``. Returns (rows, links): links are truth/links.csv
    rows (roles 'husband', 'wife').
    """
    rng = random.Random(f"{seed}:civil:marriages")
    no = rng.randint(100_000, 400_000)
    rows, links = [], []
    last = logical_date - timedelta(days=1)
    for hh in pop.households:
        head = hh.members[0]
        spouse = next((m for m in hh.members[1:] if m.relation_code == "10"), None)
        if spouse is None or rng.random() >= MARRIAGE_REGISTERED_SHARE:
            continue
        husband, wife = (head, spouse) if head.sex_code == "1" else (spouse, head)
        first = max(shift_years(husband.birth, MARRIAGE_AGE_MEN), shift_years(wife.birth, MARRIAGE_AGE_WOMEN),
                    date(1980, 1, 1))
        if first > last:  # not yet of legal marriage age: living together, not registered
            continue
        until = min(shift_years(first, 10), last)
        registered = date.fromordinal(first.toordinal() + rng._randbelow(until.toordinal() - first.toordinal() + 1))  # type: ignore[attr-defined]
        key = f"J{hh.district.code}-{registered.year}-{no:06d}"
        no += 1
        rows.append({
            "cert_no": key, "husband_name": husband.name, "husband_id_no": husband.id_no, "husband_sex": "男",
            "husband_birth_date": zh_date(husband.birth), "wife_name": wife.name, "wife_id_no": wife.id_no,
            "wife_sex": "女", "wife_birth_date": zh_date(wife.birth), "register_date": zh_date(registered),
            "registry_office": f"{hh.district.name}民政局婚姻登记处", "community_code": hh.community.code,
            "updated_at": ts(random_local_time(rng, registered, logical_date))})
        links.append(("civil", "marriages", key, "husband", husband.person_no))
        links.append(("civil", "marriages", key, "wife", wife.person_no))
    return rows, links


def elderly_subsidy_rows(pop: Population, seed: int, logical_date: date) -> tuple[list[dict[str, Any]], list[tuple]]:
    """civil.elderly_subsidy: 高龄津贴 paid to residents aged 80 and over, 90% of them (the others did not apply),
    in household order.

    subsidy_no 'GL' + 8 digits (PRIMARY KEY); id_no 18 digits; sex '男' / '女'; birth_date and start_date Chinese
    text ('1940年5月1日'); age INTEGER (whole years on ``logical_date``); monthly_amount NUMERIC(10,2) yuan by
    :data:`ELDERLY_BANDS` of the current age; start_date the first day of the month after the 80th birthday, not
    before 2010-01-01; bank_account '6217' + 12 digits; status '发放中' (95%) / '暂停'; updated_at local
    'YYYY-MM-DD HH:MM:SS' after start_date. Seeded stream ``"<seed>:civil:elderly"``. Returns (rows, links) with
    links role 'recipient'.
    """
    rng = random.Random(f"{seed}:civil:elderly")
    no = rng.randint(10_000_000, 40_000_000)
    rows, links = [], []
    for hh in pop.households:
        for p in hh.members:
            if p.age < 80 or rng.random() >= 0.9:
                continue
            eighty = shift_years(p.birth, 80)
            start = max(date(eighty.year + eighty.month // 12, eighty.month % 12 + 1, 1), date(2010, 1, 1))
            start = min(start, logical_date)
            amount = next(a for first, a in ELDERLY_BANDS if p.age >= first)
            key = f"GL{no:08d}"
            no += 1
            rows.append({"subsidy_no": key, "id_no": p.id_no, "name": p.name,
                         "sex": "男" if p.sex_code == "1" else "女",
                         "birth_date": zh_date(p.birth), "age": p.age, "monthly_amount": amount,
                         "start_date": zh_date(start), "bank_account": f"6217{rng.randrange(10**12):012d}",
                         "community_code": p.community_code, "status": "暂停" if rng.random() < 0.05 else "发放中",
                         "updated_at": ts(random_local_time(rng, start, logical_date))})
            links.append(("civil", "elderly_subsidy", key, "recipient", p.person_no))
    return rows, links
