"""Records of the health commission, human resources & social security, the standard address registry and the
government service centre's one-window applications, each in its department's own schema and conventions.

Every builder draws from its own seeded stream (``"<seed>:health"``, ``":hrss"``, ``":address"``,
``":applications"``) so adding or changing one never moves another. Rows are plain dicts with the column names of
docs/sample_municipality.md; each builder also returns ``links``: (source, table, row_key, role, person_key) rows
of ``truth/links.csv``, the true person behind each record. Faults come later (:mod:`sample.more_faults`).
"""
from __future__ import annotations

import random
import re
import struct
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from bson import ObjectId

from govlake.codes.code_lists import id_check_char
from sample.departments import LOCAL, _utc, ts
from sample.population import (
    REL_DAUGHTER,
    REL_HEAD,
    REL_SON,
    REL_SPOUSE,
    Household,
    Person,
    Population,
    random_local_time,
    shift_years,
)

BIRTH_COLUMNS = ("cert_no", "child_name", "child_sex", "birth_date", "birth_time", "birth_weight_g",
                 "gestation_weeks", "hospital_name", "mother_name", "mother_id_no", "father_name", "father_id_no",
                 "community_code", "updated_at")
DEATH_COLUMNS = ("death_no", "deceased_name", "id_no", "sex", "birth_date", "death_date", "death_place",
                 "cause_icd10", "community_code", "updated_at")
EMPLOYMENT_COLUMNS = ("emp_no", "id_no", "name", "sex", "birth_date", "phone", "employer_name",
                      "employer_credit_code", "occupation_code", "start_date", "end_date", "community_code",
                      "updated_at")
INSURANCE_COLUMNS = ("si_no", "id_no", "name", "sex", "insurance_type", "start_month", "monthly_base", "status",
                     "updated_at")
ADDRESS_COLUMNS = ("address_id", "full_address", "district_code", "street_code", "division_code", "building_no",
                   "unit_no", "room_no", "lng", "lat", "grid_code", "updated_at")
EVALUATION_HEADER = ("办件编号", "评价等级", "评价渠道", "评价时间", "评价内容")
LINK_COLUMNS = ("source", "table", "row_key", "role", "person_key")
DECEASED_COLUMNS = ("person_key", "id_no", "name", "sex_code", "birth_date", "death_date", "district_code",
                    "community_code")

#: Hospitals (助产机构) of the city, by name.
HOSPITALS = ("河北医科大学第二医院", "河北医科大学第四医院", "石家庄市妇产医院", "石家庄市第一医院",
             "河北省人民医院", "石家庄市第四医院", "河北省儿童医院", "和平医院")
#: ICD-10 codes of common causes of death (circulatory, neoplasms, respiratory, diabetes, injury).
CAUSES = (("I21.9", 18), ("I63.9", 20), ("I10", 8), ("C34.9", 12), ("C16.9", 5), ("C22.9", 5), ("J44.9", 9),
          ("J18.9", 6), ("E11.9", 5), ("N18.9", 3), ("V89.2", 3), ("W19", 2), ("R99", 4))
DEATH_PLACES = (("医疗卫生机构", 55), ("家中", 38), ("其他", 7))
#: Crude death rate of Hebei, 2020 (about 7 per 1,000 a year; Hebei statistical yearbook).
DEATH_RATE = 0.007
#: Insurance type codes of the social insurance business (险种类型): 110 企业职工基本养老保险, 120 城乡居民基本养老保险,
#: 210 失业保险, 310 城镇职工基本医疗保险, 390 城乡居民基本医疗保险, 410 工伤保险.
EMPLOYEE_INSURANCE = ("110", "210", "310", "410")
RESIDENT_INSURANCE = ("120", "390")
#: GB/T 2261.4-2003 employment codes drawn for employees.
OCCUPATIONS = (("17", 30), ("24", 30), ("13", 15), ("21", 8), ("11", 4), ("54", 8), ("51", 5))
#: Shijiazhuang's 2024 social insurance contribution base range, yuan per month (about 60%–300% of average wage).
BASE_RANGE = (4_300.0, 21_500.0)
#: Unified social credit code characters and weights (GB 32100-2015).
CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
#: One-window services: (service code, name).
SERVICES = (("ZW0101", "居住证办理"), ("ZW0201", "最低生活保障申请"), ("ZW0202", "高龄津贴申请"),
            ("ZW0301", "就业登记"), ("ZW0302", "社会保障卡申领"), ("ZW0401", "生育登记"))
CHANNELS = (("窗口", 60), ("网上", 30), ("自助终端", 10))
STEPS = ("受理", "审核", "决定", "办结")
EVAL_LEVELS = (("非常满意", 62), ("满意", 25), ("基本满意", 8), ("不满意", 4), ("非常不满意", 1))
EVAL_TEXTS = ("办事效率高", "工作人员态度好", "一次办好", "等待时间较长", "材料要求说明清楚", "")
APPLICATION_WINDOW_DAYS = 30


def credit_check_char(body17: str) -> str:
    """GB 32100-2015 check character of a 17-character unified social credit code body."""
    s = sum(CREDIT_CHARS.index(c) * w for c, w in zip(body17, CREDIT_WEIGHTS, strict=False))
    return CREDIT_CHARS[(31 - s % 31) % 31]


def legacy_id(id18: str) -> str:
    """The 15-digit ID (GB 11643-1989) an 18-digit one was converted from: no century, no check character."""
    return id18[:6] + id18[8:17]


def iso(d: date) -> str:
    """'YYYY-MM-DD'."""
    return d.isoformat()


_PICK_TABLES: dict[tuple, tuple[list, list]] = {}


def _pick(rng: random.Random, weighted) -> str:
    """A key of ``weighted`` ((key, weight) pairs), drawn exactly as ``rng.choices(keys, weights)`` would."""
    table = _PICK_TABLES.get(weighted)
    if table is None:
        table = _PICK_TABLES[weighted] = ([k for k, _ in weighted], list(accumulate(w for _, w in weighted)))
    return rng.choices(table[0], cum_weights=table[1])[0]


def parents_of(hh: Household, child: Person) -> tuple[Person | None, Person | None]:
    """(mother, father) of a household member as far as the household shows them: the head and spouse for a
    child (关系 20/30), an adult son or daughter of the head for a grandchild (41/42), else none."""
    if child.relation_code in (REL_SON, REL_DAUGHTER):
        adults = [m for m in hh.members if m.relation_code in (REL_HEAD, REL_SPOUSE)]
    elif child.relation_code in ("41", "42"):
        adults = [m for m in hh.members if m.relation_code in (REL_SON, REL_DAUGHTER) and m.age >= 18]
    else:
        adults = []
    mother = next((m for m in adults if m.sex_code == "2"), None)
    father = next((m for m in adults if m.sex_code == "1"), None)
    return mother, father


def birth_row(rng: random.Random, cert_no: str, hh: Household, child: Person, mother: Person | None,
              father: Person | None, updated: datetime) -> dict[str, Any]:
    """One health.births row (true values) of ``child`` born in household ``hh``."""
    return {"cert_no": cert_no, "child_name": child.name, "child_sex": child.sex_code,
            "birth_date": iso(child.birth), "birth_time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}",
            "birth_weight_g": int(round(rng.gauss(3300, 420))),
            "gestation_weeks": rng.choice((37, 38, 39, 39, 40, 40, 41)),
            "hospital_name": rng.choice(HOSPITALS),
            "mother_name": mother.name if mother else None, "mother_id_no": mother.id_no if mother else None,
            "father_name": father.name if father else None, "father_id_no": father.id_no if father else None,
            "community_code": hh.community.code, "updated_at": ts(updated)}


def birth_rows(pop: Population, seed: int, logical_date: date) -> tuple[list[dict[str, Any]], list[tuple]]:
    """health.births: a 出生医学证明 for every resident born in the 2 years up to ``logical_date`` (born in the city).

    cert_no 'P' + 9 digits; child_sex GB/T 2261.1 '1'/'2'; birth_date ISO 'YYYY-MM-DD'; birth_time 'HH:MM';
    birth_weight_g INTEGER (grams, N(3300, 420)); gestation_weeks INTEGER; the parents' names and 18-digit IDs
    from :func:`parents_of` (NULL when the household does not show them); updated_at within 30 days after the
    birth, not after ``logical_date``. Returns (rows, links).
    """
    rng = random.Random(f"{seed}:health")
    first = logical_date - timedelta(days=730)
    rows, links = [], []
    no = rng.randint(100_000_000, 400_000_000)
    for hh in pop.households:
        for child in hh.members:
            if child.birth < first:
                continue
            mother, father = parents_of(hh, child)
            key = f"P{no:09d}"
            no += 1
            upd = random_local_time(rng, child.birth, min(child.birth + timedelta(days=30), logical_date))
            rows.append(birth_row(rng, key, hh, child, mother, father, upd))
            links.append(("health", "births", key, "child", child.person_no))
            for role, p in (("mother", mother), ("father", father)):
                if p is not None:
                    links.append(("health", "births", key, role, p.person_no))
    return rows, links


def new_id(rng: random.Random, used: set[str], district_code: str, birth: date, sex_code: str) -> str:
    """A GB 11643 ID not in ``used`` (added to it): division code + YYYYMMDD + sequence (odd = male) + check."""
    parity = 1 if sex_code == "1" else 0
    while True:
        seq = rng.randrange(0, 500) * 2 + parity
        if seq == 0:
            continue
        body = f"{district_code}{birth:%Y%m%d}{seq:03d}"
        id_no = body + id_check_char(body)
        if id_no not in used:
            used.add(id_no)
            return id_no


def death_row(rng: random.Random, key: str, name: str, id18: str, sex: str, birth: date, died: date,
              community_code: str, updated: datetime) -> dict[str, Any]:
    """One health.deaths row: the ID is written as 15 digits for people born before 1950 (department convention)."""
    return {"death_no": key, "deceased_name": name, "id_no": legacy_id(id18) if birth.year < 1950 else id18,
            "sex": sex, "birth_date": iso(birth), "death_date": iso(died), "death_place": _pick(rng, DEATH_PLACES),
            "cause_icd10": _pick(rng, CAUSES), "community_code": community_code, "updated_at": ts(updated)}


def death_rows(pop: Population, seed: int, logical_date: date, fake) -> tuple[list[dict[str, Any]], list[tuple]]:
    """health.deaths of the 365 days up to ``logical_date``: round(residents × 0.007) people (at least 3), no
    longer in the household registry (their hukou was cancelled), aged 60–100, from the district's census
    pyramid. IDs of people born before 1950 are delivered in 15 digits (the commission's legacy system).

    Returns (rows, deceased): deceased truth rows in :data:`DECEASED_COLUMNS` order.
    """
    rng = random.Random(f"{seed}:health:deaths")
    n = max(3, round(pop.residents * DEATH_RATE))
    used = {p.id_no for p in pop.persons}
    rows, deceased = [], []
    no = rng.randint(10_000_000, 40_000_000)
    for k in range(n):
        hh = pop.households[rng.randrange(len(pop.households))]
        d = hh.district
        options = [(s, a) for s in ("1", "2") for a in range(60, 101)]
        sex, age = rng.choices(options, weights=[d.age_weights[s][a] * (1.06 ** (a - 60)) + 1e-9
                                                 for s, a in options])[0]
        died = logical_date - timedelta(days=rng.randrange(365))
        birth = shift_years(died, -age) - timedelta(days=rng.randrange(1, 365))
        id18 = new_id(rng, used, d.code, birth, sex)
        name = (fake.last_name() + (fake.first_name_male() if sex == "1" else fake.first_name_female()))
        key = f"SW{no + k:08d}"
        upd = random_local_time(rng, died, min(died + timedelta(days=7), logical_date))
        rows.append(death_row(rng, key, name, id18, sex, birth, died, hh.community.code, upd))
        deceased.append((f"D{no + k:08d}", id18, name, sex, iso(birth), iso(died), d.code, hh.community.code))
    return rows, deceased


def day_between(rng: random.Random, first: date, last: date) -> date:
    """A uniform day in [first, last]; ``first`` itself when ``last`` is earlier (e.g. a resident who turned 18
    less than 15 days before the logical date: the earliest possible day, never a day before ``first``)."""
    return date.fromordinal(rng.randint(first.toordinal(), max(first, last).toordinal()))


def credit_code(rng: random.Random, district_code: str) -> str:
    """A unified social credit code (GB 32100-2015): '91' (enterprise) + 6-digit division + 9 characters + check."""
    body = "91" + district_code + "".join(rng.choice(CREDIT_CHARS[:10] + "ABCDEFGH") for _ in range(9))
    return body + credit_check_char(body)


def employment_rows(pop: Population, seed: int, logical_date: date, fake
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple]]:
    """hrss.employment and hrss.social_insurance.

    Employment: 62% of residents aged 18–59 are employed (an 'JY' + 8-digit record with an employer from a pool of
    residents / 20 companies, a valid unified social credit code, a GB/T 2261.4 occupation, start_date ISO after
    the 18th birthday, end_date NULL, or an earlier ended job for 20%). sex 'M'/'F'; birth_date ISO.
    Social insurance ('SB' + 8 digits): employees get 110, 210, 310, 410 from their start month; other adults
    get 120 and 390 with probability 0.5; monthly_base NUMERIC(10,2) yuan in 4,300–21,500 (120/390: NULL);
    start_month 'YYYYMM'; status '1' 参保缴费 / '2' 暂停缴费 (10%). Returns (employment, insurance, links).
    """
    rng = random.Random(f"{seed}:hrss")
    companies = [(fake.company(), credit_code(rng, d.code)) for d in
                 (rng.choice(pop.districts) for _ in range(max(3, pop.residents // 20)))]
    emp, ins, links = [], [], []
    e_no, s_no = rng.randint(10_000_000, 40_000_000), rng.randint(10_000_000, 40_000_000)
    for hh in pop.households:
        for p in hh.members:
            if p.age < 18:
                continue
            sex = "M" if p.sex_code == "1" else "F"
            adult = shift_years(p.birth, 18)
            employed = p.age < 60 and rng.random() < 0.62
            types: tuple[str, ...]
            if employed:
                jobs: list[tuple[date, date | None]] = []
                start = day_between(rng, max(adult, date(2000, 1, 1)), logical_date - timedelta(days=15))
                if rng.random() < 0.2 and (start - adult).days > 400:
                    earlier = date.fromordinal(rng.randint(adult.toordinal(),
                                                           (start - timedelta(days=200)).toordinal()))
                    jobs.append((earlier, start - timedelta(days=rng.randint(1, 60))))
                jobs.append((start, None))
                for s, e in jobs:
                    name, code = rng.choice(companies)
                    key = f"JY{e_no:08d}"
                    e_no += 1
                    emp.append({"emp_no": key, "id_no": p.id_no, "name": p.name, "sex": sex, "birth_date": iso(p.birth),
                                "phone": p.phone, "employer_name": name, "employer_credit_code": code,
                                "occupation_code": _pick(rng, OCCUPATIONS), "start_date": iso(s),
                                "end_date": iso(e) if e else None, "community_code": p.community_code,
                                "updated_at": ts(random_local_time(rng, e or s, logical_date))})
                    links.append(("hrss", "employment", key, "employee", p.person_no))
                types, base = EMPLOYEE_INSURANCE, Decimal(f"{rng.uniform(*BASE_RANGE):.2f}")
                since = start
            elif rng.random() < 0.5:
                types, base = RESIDENT_INSURANCE, None
                since = day_between(rng, max(adult, date(2012, 1, 1)), logical_date - timedelta(days=15))
            else:
                continue
            for t in types:
                key = f"SB{s_no:08d}"
                s_no += 1
                ins.append({"si_no": key, "id_no": p.id_no, "name": p.name, "sex": sex, "insurance_type": t,
                            "start_month": f"{since:%Y%m}", "monthly_base": base,
                            "status": "2" if rng.random() < 0.1 else "1",
                            "updated_at": ts(random_local_time(rng, since, logical_date))})
                links.append(("hrss", "social_insurance", key, "insured", p.person_no))
    return emp, ins, links


def address_row(hh: Household, address_id: str, updated: datetime) -> dict[str, Any]:
    """One address.standard_address row of a household's address (true values)."""
    building = unit = room = None
    m = re.search(r"(\d+)号楼(\d+)单元(\d+)室$", hh.address)
    if m:
        building, unit, room = f"{int(m[1]):02d}", f"{int(m[2]):02d}", f"{int(m[3]):04d}"
    return {"address_id": address_id, "full_address": hh.address, "district_code": hh.district.code,
            "street_code": hh.community.street_code, "division_code": hh.community.code, "building_no": building,
            "unit_no": unit, "room_no": room, "lng": hh.lng, "lat": hh.lat, "grid_code": hh.grid.grid_code,
            "updated_at": ts(updated)}


def address_rows(pop: Population, seed: int, logical_date: date) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """address.standard_address: one standard address per household address (标准地址).

    address_id 'AD' + 10 digits; division_code is the 12-digit community code (GB/T 2260 + statistical
    street/community parts), street_code 9 digits, district_code 6; building_no and unit_no 2 digits and
    room_no 4 digits with leading zeros (NULL in villages); lng/lat REAL degrees (6 decimals, the truth point);
    updated_at not before the household's registered_date. Returns (rows, {household_no: address_id}).
    """
    rng = random.Random(f"{seed}:address")
    no = rng.randint(1_000_000_000, 4_000_000_000)
    rows, ids = [], {}
    for k, hh in enumerate(pop.households):
        key = f"AD{no + k:010d}"
        upd = random_local_time(rng, max(hh.registered_date, logical_date - timedelta(days=1500)), logical_date)
        rows.append(address_row(hh, key, upd))
        ids[hh.household_no] = key
    return rows, ids


def application_doc(rng: random.Random, app_no: str, applicant: Person, hh: Household, submitted: datetime,
                    end: datetime, fake) -> dict[str, Any]:
    """One zhengwu.applications document (true values) submitted at local ``submitted``, steps cut at ``end``."""
    code, service = rng.choice(SERVICES)
    form: dict[str, Any]
    if service == "居住证办理":
        form = {"reason": rng.choice(("务工", "就学", "投靠亲属")), "address": hh.address}
    elif service == "最低生活保障申请":
        form = {"family_size": len(hh.members), "monthly_income": round(rng.uniform(0, 900), 2)}
    elif service == "高龄津贴申请":
        form = {"age": applicant.age, "bank_account": f"6217{rng.randrange(10**12):012d}"}
    elif service == "就业登记":
        form = {"employer_name": fake.company(),
                "start_date": iso(submitted.date() - timedelta(days=rng.randrange(60)))}
    elif service == "社会保障卡申领":
        form = {"bank": rng.choice(("中国工商银行", "中国建设银行", "中国农业银行", "中国银行")),
                "mail": rng.random() < 0.4}
    else:
        form = {"child_order": rng.choice((1, 1, 2, 2, 3)), "spouse_name": fake.name()}
    steps, at = [], submitted
    for k, step in enumerate(STEPS):
        if k:
            at = at + timedelta(seconds=rng.randint(1_800, 3 * 86_400))
        if at > end:
            break
        steps.append({"step": step, "at": _utc(at), "handler": f"CK{rng.randint(1, 40):03d}",
                      "opinion": "同意" if step != "受理" else "材料齐全，予以受理"})
    status = {1: "受理中", 2: "审核中", 3: "审核中", 4: "已办结"}[len(steps)]
    return {"_id": ObjectId(struct.pack(">I", int(_utc(submitted).timestamp()))
                            + rng.getrandbits(64).to_bytes(8, "big")),
            "app_no": app_no, "service": {"code": code, "name": service},
            "applicant": {"id_no": applicant.id_no, "name": applicant.name, "phone": applicant.phone},
            "channel": _pick(rng, CHANNELS), "submitted_at": _utc(submitted), "form": form, "steps": steps,
            "status": status, "updated_at": steps[-1]["at"]}


def application_docs(pop: Population, seed: int, logical_date: date, fake, stream: str = "applications",
                     first_day: date | None = None, n: int | None = None) -> tuple[list[dict[str, Any]], list[tuple]]:
    """zhengwu.applications: round(residents / 10) one-window applications (at least 1) by adult residents,
    submitted in working hours of the 30 days up to ``logical_date`` (or from ``first_day``), ordered by
    submission; app_no 'ZW' + submission date YYYYMMDD + 4-digit sequence. Steps 受理 → 审核 → 决定 → 办结, each
    30 min–3 days after the last, cut at the end of ``logical_date``; status 受理中 / 审核中 / 已办结.
    Datetimes are UTC. Returns (documents, links).
    """
    rng = random.Random(f"{seed}:{stream}")
    adults = [(hh, p) for hh in pop.households for p in hh.members if p.age >= 18]
    if not adults:
        return [], []
    n = max(1, round(pop.residents / 10)) if n is None else n
    first_day = first_day or logical_date - timedelta(days=APPLICATION_WINDOW_DAYS - 1)
    end = datetime.combine(logical_date, time(23, 59, 59))
    drafts = []
    for _ in range(n):
        day = date.fromordinal(rng.randint(first_day.toordinal(), logical_date.toordinal()))
        drafts.append((datetime.combine(day, time(rng.randint(8, 16), rng.randrange(60), rng.randrange(60))),
                       rng.randrange(len(adults))))
    drafts.sort()
    docs, links = [], []
    per_day: dict[date, int] = {}
    for submitted, i in drafts:
        hh, p = adults[i]
        k = per_day[submitted.date()] = per_day.get(submitted.date(), 0) + 1
        key = f"ZW{submitted:%Y%m%d}{k:04d}"
        docs.append(application_doc(rng, key, p, hh, submitted, end, fake))
        links.append(("zhengwu", "applications", key, "applicant", p.person_no))
    return docs, links


def evaluation_rows(docs: list[dict[str, Any]], seed: int, first: date, last: date) -> list[list[str]]:
    """The 好差评 (service evaluation) rows given from ``first`` to ``last`` (local days) to finished (已办结)
    applications, 60% of which are evaluated 1–120 minutes after 办结: 办件编号, 评价等级 (非常满意 … 非常不满意),
    评价渠道, 评价时间 'YYYY/M/D H:MM:SS' local, 评价内容 (may be empty). Every value is GBK-encodable."""
    rng = random.Random(f"{seed}:evaluations:{first}:{last}")
    rows = []
    for d in docs:
        if d["status"] != "已办结" or not isinstance(d.get("steps"), list):
            continue
        level, text, minutes, keep = _pick(rng, EVAL_LEVELS), rng.choice(EVAL_TEXTS), rng.randint(1, 120), rng.random()
        at = d["steps"][-1]["at"].astimezone(LOCAL).replace(tzinfo=None) + timedelta(minutes=minutes)
        if keep >= 0.6 or not first <= at.date() <= last:
            continue
        rows.append([d["app_no"], level, d["channel"],
                     f"{at.year}/{at.month}/{at.day} {at.hour}:{at.minute:02d}:{at.second:02d}", text])
    return rows
