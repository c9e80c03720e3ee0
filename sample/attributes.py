"""Census-calibrated person attributes of the sample population: education, marital status and
registered (户籍) vs floating (流动) residence.

Drawn after the households, from their own seeded stream ``random.Random(f"{seed}:attributes")``, so adding them
does not change any other draw. Each attribute is filled by exact quotas (largest remainder) per district (and per
sex), so the shares of a population match the 2020 census up to rounding, whatever its size.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from sample.kinship import REL_FATHER, REL_HEAD, REL_MOTHER, REL_SPOUSE, allocate

if TYPE_CHECKING:  # pragma: no cover
    from sample.population import Household, Person, Population

#: Census education levels (7th national census 2020, columns ``<level>_男`` / ``<level>_女``) in ascending order and
#: the GB/T 4658-2006 code each is delivered as. GB/T 4658-2006 has no code for "never attended" or pre-school, so
#: both become 90 其他; 高中 (incl. secondary vocational) becomes 60 普通高级中学教育; 本科及以上 becomes 20 大学本科
#: 教育 (the county table does not separate postgraduates).
EDUCATION_LEVELS: tuple[tuple[str, str], ...] = (
    ("未上过学", "90"), ("学前教育", "90"), ("小学", "80"), ("初中", "70"), ("高中", "60"),
    ("大学专科", "30"), ("本科及以上", "20"))
#: Persons younger than this (whole years on the logical date) get no education (NULL).
EDUCATION_MIN_AGE = 6
#: School-age persons get the level of their age (index into EDUCATION_LEVELS) while its quota lasts:
#: 6–11 小学, 12–14 初中, 15–17 高中.
SCHOOL_LEVEL_BY_AGE = tuple([2] * 6 + [3] * 3 + [4] * 3)  # ages 6..17

#: Census marital columns (persons aged 15+) in the order labels are handed out, and their GB/T 2261.2-2003 codes.
MARITAL_LEVELS: tuple[tuple[str, str], ...] = (("未婚", "10"), ("有配偶", "20"), ("离婚", "40"), ("丧偶", "30"))
UNMARRIED, MARRIED, DIVORCED, WIDOWED = "10", "20", "40", "30"
#: Persons younger than this get no marital status (NULL).
MARITAL_MIN_AGE = 15
#: Legal minimum marriage age by GB/T 2261.1 sex code (Civil Code of the PRC, art. 1047).
LEGAL_MARRIAGE_AGE = {"1": 22, "2": 20}

REGISTERED, FLOATING = "户籍", "流动"


def _allocate(total: int, weights: list[float]) -> list[int]:
    if total <= 0 or sum(weights) <= 0:
        return [0] * len(weights)
    return allocate(total, weights)


def assign_education(persons: list[Person], counts: dict[str, list[float]], rng: random.Random) -> None:
    """Set ``Person.education`` (GB/T 4658-2006 code or None) of the persons of ONE district.

    Rule: age < 6 → None. Per sex, the persons aged 6+ share out quotas ∝ the district's census counts
    ``counts[sex]`` (7 levels of :data:`EDUCATION_LEVELS`, largest remainder). School-age persons (6–17) first take
    the level of their age (:data:`SCHOOL_LEVEL_BY_AGE`) while its quota lasts, else the highest level below it with
    quota left; adults then take the remaining quota labels sorted from lowest level, handed to adults sorted from
    oldest (age + Gauss(0, 15) noise), so younger adults tend to be better educated. Exact shares up to rounding.
    """
    for sex in ("1", "2"):
        group = [p for p in persons if p.sex_code == sex and p.age >= EDUCATION_MIN_AGE]
        if not group:
            continue
        quota = _allocate(len(group), counts.get(sex) or [1.0] * len(EDUCATION_LEVELS))
        school = [p for p in group if p.age < EDUCATION_MIN_AGE + len(SCHOOL_LEVEL_BY_AGE)]
        adults = [p for p in group if p.age >= EDUCATION_MIN_AGE + len(SCHOOL_LEVEL_BY_AGE)]
        for p in school:
            want = SCHOOL_LEVEL_BY_AGE[p.age - EDUCATION_MIN_AGE]
            level = next((k for k in range(want, -1, -1) if quota[k] > 0), None)
            if level is None:
                level = next(k for k in range(len(quota)) if quota[k] > 0)
            quota[level] -= 1
            p.education = EDUCATION_LEVELS[level][1]
        labels = [EDUCATION_LEVELS[k][1] for k in range(len(quota)) for _ in range(quota[k])]
        keyed = sorted(((-(p.age + rng.gauss(0.0, 15.0)), i) for i, p in enumerate(adults)))
        for (_, i), code in zip(keyed, labels, strict=False):
            adults[i].education = code


def _couple_members(hh: Household) -> set[int]:
    """Indexes of members married to each other by the household rule: head + spouse (GB/T 4761 '10'), and
    father + mother of the head ('51' + '52') when both are members."""
    rels = [m.relation_code for m in hh.members]
    out: set[int] = set()
    if REL_SPOUSE in rels:
        out |= {0, rels.index(REL_SPOUSE)}
    if REL_FATHER in rels and REL_MOTHER in rels:
        out |= {rels.index(REL_FATHER), rels.index(REL_MOTHER)}
    return out


def assign_marital(households: list[Household], counts: dict[str, list[float]], rng: random.Random) -> None:
    """Set ``Person.marital_status`` (GB/T 2261.2-2003 code or None) of the members of ONE district's households.

    Household rule (exact, tested): age < 15 → None; head and spouse → 20 已婚, and the head's father and mother
    when both are members → 20; under the legal marriage age (men 22, women 20) → 10 未婚; a head without a
    spouse in the household is never 20. Everyone else 15+ fills the district's census quotas per sex
    (未婚/有配偶/离婚/丧偶, columns ``<status>_男/_女``, largest remainder over all 15+ persons, minus what the
    rule already fixed): lone heads first take 10 (under 35), 40 (35–64) or 30 (65+) while quota lasts, then the
    others take the remaining labels in the order 10, 20, 40, 30, handed out by age + Gauss(0, 8) ascending.
    Persons left without a label (quota exhausted by the fixed rule) get 20 if 35+ else 10 (lone heads 40/10).
    """
    for sex in ("1", "2"):
        fixed: dict[str, int] = dict.fromkeys((c for _, c in MARITAL_LEVELS), 0)
        lone_heads, free = [], []
        n15 = 0
        for hh in households:
            couple = _couple_members(hh)
            for i, p in enumerate(hh.members):
                if p.sex_code != sex or p.age < MARITAL_MIN_AGE:
                    continue
                n15 += 1
                if i in couple:
                    p.marital_status = MARRIED
                elif p.age < LEGAL_MARRIAGE_AGE[sex]:
                    p.marital_status = UNMARRIED
                elif p.relation_code == REL_HEAD:
                    lone_heads.append(p)
                    continue
                else:
                    free.append(p)
                    continue
                fixed[p.marital_status] += 1
        if not n15:
            continue
        target = _allocate(n15, counts.get(sex) or [1.0] * len(MARITAL_LEVELS))
        left = {code: max(0, t - fixed[code]) for (_, code), t in zip(MARITAL_LEVELS, target, strict=False)}
        for p in lone_heads:
            want = UNMARRIED if p.age < 35 else DIVORCED if p.age < 65 else WIDOWED
            code = want if left[want] > 0 else next((c for c in (UNMARRIED, DIVORCED, WIDOWED) if left[c] > 0),
                                                    want)
            left[code] = max(0, left[code] - 1)
            p.marital_status = code
        labels = [code for _, code in MARITAL_LEVELS for _ in range(left[code])]
        keyed = sorted((p.age + rng.gauss(0.0, 8.0), i) for i, p in enumerate(free))
        for k, (_, i) in enumerate(keyed):
            p = free[i]
            p.marital_status = labels[k] if k < len(labels) else (MARRIED if p.age >= 35 else UNMARRIED)


def assign_floating(households: list[Household], share: float, rng: random.Random) -> None:
    """Set ``Household.is_floating`` and each member's ``registration_type`` ('户籍' or '流动') of ONE district.

    Households are taken in a seeded random order and flagged floating while the flagged residents stay within
    round(share × residents); so the floating share of residents equals ``share`` up to one household.
    ``share`` = census (户口登记地在外乡镇街道人口_省外 + _本省其他县) / 人口数_合计 of the district.
    """
    total = sum(len(h.members) for h in households)
    target = round(share * total)
    order = list(range(len(households)))
    rng.shuffle(order)
    flagged = 0
    for i in order:
        hh = households[i]
        size = len(hh.members)
        hh.is_floating = flagged + size <= target
        if hh.is_floating:
            flagged += size
        for p in hh.members:
            p.registration_type = FLOATING if hh.is_floating else REGISTERED


def assign_attributes(pop: Population, seed: int) -> None:
    """Education, marital status and registration type of every resident of ``pop`` (after its build), district
    by district in census order, from ``random.Random(f"{seed}:attributes")``. Calibration: the 2020 census
    columns loaded into :class:`sample.reference.District` (``education``, ``marital``, ``floating_share``).
    """
    rng = random.Random(f"{seed}:attributes")
    by_district: dict[str, list] = {d.code: [] for d in pop.districts}
    for hh in pop.households:
        by_district[hh.district.code].append(hh)
    for d in pop.districts:
        households = by_district[d.code]
        if not households:
            continue
        persons = [p for hh in households for p in hh.members]
        assign_education(persons, d.education, rng)
        assign_marital(households, d.marital, rng)
        assign_floating(households, d.floating_share, rng)
