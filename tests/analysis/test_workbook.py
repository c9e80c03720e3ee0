"""The run's Excel workbook (govlake.analysis.workbook): small inline marts published for a date in a temporary
lakehouse, the workbook written, opened with openpyxl and its figures compared with the marts' rows."""
from __future__ import annotations

import datetime as dt
from datetime import date

import pandas as pd
import pytest
from openpyxl import load_workbook

from govlake.analysis import workbook as wb
from govlake.analysis.stage import run_analysis
from govlake.core import lake
from govlake.core.config import Settings

SNAP = date(2025, 6, 30)  # a Monday: the event period is the 12 complete weeks ending Sunday 2025-06-29
EARLIER = date(2025, 6, 23)
RUN_TIME = dt.datetime(2025, 7, 1, 0, 5, tzinfo=dt.UTC)  # 08:05 in Asia/Shanghai

POPULATION = ("snapshot_date date, district_code string, district_name string, sex_code string, age_group string, "
              "population long", [
                  (SNAP, "130102", "长安区", "1", "30-34", 3), (SNAP, "130102", "长安区", "2", "30-34", 2),
                  (SNAP, "130102", "长安区", "1", "65-69", 1), (SNAP, "130104", "桥西区", "2", "00-04", 4),
                  (SNAP, "130104", "桥西区", "2", "70-74", 2), (SNAP, "130104", "桥西区", "1", "15-19", 5),
                  (EARLIER, "130102", "长安区", "1", "30-34", 100)])  # another snapshot: not in the workbook
EVENTS = ("week_start date, district_code string, district_name string, category_l1 string, channel string, "
          "events long, closed long", [
              (date(2025, 6, 23), "130102", "长安区", "城乡建设", "grid", 5, 3),
              (date(2025, 6, 23), "130102", "长安区", "环境保护", "hotline", 2, 2),
              (date(2025, 6, 16), "130104", "桥西区", "城乡建设", "grid", 4, 1),
              (date(2025, 6, 30), "130104", "桥西区", "城乡建设", "grid", 9, 0),  # incomplete week: outside
              (date(2025, 6, 16), "000000", "未知区县", "未分类", "hotline", 1, 0)])
HOUSEHOLDS = ("snapshot_date date, district_code string, households long, persons long, mean_household_size double, "
              "size_1 long, size_2 long, size_3 long, size_4 long, size_5_plus long, elderly_living_alone long, "
              "elderly_only_households long, elderly_only_persons long, elderly_persons long", [
                  (SNAP, "130104", 2, 3, 1.5, 1, 1, 0, 0, 0, 1, 1, 2, 3),
                  (SNAP, "130102", 3, 7, 7 / 3, 1, 1, 0, 0, 1, 0, 0, 0, 1)])
HOTSPOTS = ("period_start date, period_end date, cell_level string, cell_code string, district_code string, "
            "events long, gi_star_z double, p_value double, hotspot string", [
                (date(2025, 6, 3), SNAP, "grid", "130102001001001", "130102", 6, 2.1, 0.0357, "hot 95%"),
                (date(2025, 6, 3), SNAP, "grid", "130102001001002", "130102", 1, -0.5, 0.617, "not significant"),
                (date(2025, 6, 3), SNAP, "grid", "130104001001001", "130104", 3, 0.2, 0.84, "not significant"),
                (date(2025, 6, 3), SNAP, "community", "130104001001", "130104", 3, None, None, "not significant")])
MIGRATION = ("month date, district_code string, population_start long, in_moves long, out_moves long, "
             "net_moves long, in_rate double, out_rate double, net_rate double", [
                 (date(2025, 5, 1), "130102", 100, 3, 1, 2, 30.0, 10.0, 20.0),
                 (date(2025, 5, 1), "130104", 50, 1, 3, -2, 20.0, 60.0, -40.0),
                 (date(2025, 6, 1), "130102", 102, 2, 0, 2, 2000 / 102, 0.0, 2000 / 102)])
ETHNIC = ("group_key string, category string, n long, share double, rank int", [
    ("130102", "01", 5, 5 / 6, 1), ("130102", "03", 1, 1 / 6, 2), ("130104", "01", 11, 1.0, 1),
    ("(空)", "01", 2, 1.0, 1)])  # residents without a district
MARTS = {"population_by_district_sex_age": (POPULATION, "snapshot_date"),
         "grid_events_by_district_category_week": (EVENTS, None),
         "population_households": (HOUSEHOLDS, "snapshot_date"), "grid_hotspots": (HOTSPOTS, "period_end"),
         "population_migration_rates": (MIGRATION, None)}


def _lakehouse(spark, settings, tmp_path) -> Settings:
    """The marts above written and published for SNAP, the ethnic service table beside them; then a later,
    unpublished version of the population mart (the workbook must not see it)."""
    own = Settings(**{**settings.__dict__, "lakehouse": str(tmp_path / "lake"), "home": tmp_path})
    for name, ((schema, rows), part) in MARTS.items():
        writer = spark.createDataFrame(rows, schema).write.format("delta")
        (writer.partitionBy(part) if part else writer).save(own.table_path("marts", name))
    schema, rows = ETHNIC
    spark.createDataFrame(rows, schema).write.format("delta").save(
        own.table_path("analysis", "population_category_ethnic_by_district"))
    lake.record_publication(spark, own, "marts", SNAP, list(MARTS), run_id="marts-run")
    later = spark.createDataFrame([(SNAP, "130105", "新华区", "1", "20-24", 1000)], POPULATION[0])
    later.write.format("delta").mode("append").save(own.table_path("marts", "population_by_district_sex_age"))
    return own


def _block(ws, title: str) -> list[tuple]:
    """Data rows of the block titled ``title`` (after its header and units rows, up to the blank row), as wide as
    its header."""
    rows = list(ws.iter_rows(values_only=True))
    at = next(i for i, r in enumerate(rows) if r[0] == title)
    width = sum(1 for v in rows[at + 1] if v is not None)
    out = []
    for r in rows[at + 3:]:
        if all(v is None for v in r):
            break
        out.append(r[:width])
    return out


def _values(path) -> dict[str, list[tuple]]:
    book = load_workbook(path)
    return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}


def test_workbook_figures_formats_charts_and_idempotent_rewrite(spark, settings, tmp_path):
    own = _lakehouse(spark, settings, tmp_path)
    path = wb.build_workbook(spark, own, SNAP, run_id="cli:test:1", generated_at=RUN_TIME)
    assert path == tmp_path / "reports" / "baobiao" / "govlake_2025-06-30.xlsx"
    book = load_workbook(path)
    assert book.sheetnames == ["目录", "人口结构", "民族构成", "家庭户", "人口迁移", "网格事件", "网格热点", "指标说明"]

    cover = {r[0]: r for r in book["目录"].iter_rows(values_only=True) if r[0]}
    assert list(book["目录"].iter_rows(min_row=3, max_row=5, max_col=2, values_only=True)) == [
        ("统计日（逻辑日期）", dt.datetime(2025, 6, 30)), ("运行编号", "cli:test:1"),
        ("生成时间（Asia/Shanghai）", "2025-07-01 08:05:00")]
    published = lake.published_versions(spark, own, "marts", SNAP)[1]
    sources = {k: r[1] for k, r in cover.items() if str(k).startswith(("marts.", "analysis."))}
    assert sources == {**{f"marts.{t}": v for t, v in published.items()},
                       "analysis.population_category_ethnic_by_district": 0}
    assert sources["marts.population_by_district_sex_age"] == 0  # the published version, not the later append
    link = next(c for c in book["目录"]["A"] if c.value == "网格事件")
    assert link.hyperlink.location == "'网格事件'!A1" and cover["网格事件"][1].startswith("网格事件（2025-04-07")

    pop = book["人口结构"]
    districts = _block(pop, "分区县人口")
    assert [r[:9] for r in districts] == [
        ("130102", "长安区", 6, 4, 2, 200.0, 0, 5, 1), ("130104", "桥西区", 11, 5, 6, pytest.approx(500 / 6), 4, 5, 2),
        ("130100", "全市合计", 17, 9, 8, 112.5, 4, 10, 3)]
    assert [r[9] for r in districts] == [pytest.approx(1 / 6), pytest.approx(2 / 11), pytest.approx(3 / 17)]
    assert pop["J6"].number_format == "0.0%" and pop["C6"].number_format == "#,##0"
    assert pop["F6"].number_format == "#,##0.0" and pop["A8"].font.b and not pop["A6"].font.b
    assert pop.freeze_panes == "C6"
    assert [pop.cell(row=5, column=j).value for j in (3, 10)] == ["单位：人", "单位：%"]
    pyramid = {r[0]: r[1:5] for r in _block(pop, "全市人口金字塔（年龄组 × 性别）")}
    assert len(pyramid) == 18 and pyramid["30-34"] == (3, 2, 5, -3) and pyramid["00-04"] == (0, 4, 4, 0)
    assert [type(c).__name__ for c in pop._charts] == ["BarChart"] and pop._charts[0].type == "bar"
    by_age = _block(pop, "分区县 × 年龄组")
    assert by_age[-1][:3] == ("130100", "全市合计", 4) and sum(by_age[-1][2:20]) == 17

    eth = _block(book["民族构成"], "分区县民族构成")
    assert [r[:2] for r in eth] == [("000000", "未知区县"), ("130102", "长安区"), ("130104", "桥西区"),
                                    ("130100", "全市合计")]
    header = [c.value for c in book["民族构成"][4]][:7]
    assert header == ["区县代码（GB/T 2260）", "区县名称", "汉族", "回族", "合计", "少数民族", "少数民族占比"]
    assert [r[2:7] for r in eth] == [(2, 0, 2, 0, 0.0), (5, 1, 6, 1, pytest.approx(1 / 6)), (11, 0, 11, 0, 0.0),
                                     (18, 1, 19, 1, pytest.approx(1 / 19))]

    ev = book["网格事件"]
    assert ev["A1"].value == "网格事件（2025-04-07 至 2025-06-29，12 个完整周）"
    assert _block(ev, "全市按类别、状态") == [("城乡建设", 9, 4, 5, pytest.approx(4 / 9)),
                                      ("环境保护", 2, 2, 0, 1.0), ("未分类", 1, 0, 1, 0.0)]
    per = _block(ev, "分区县")
    assert [r[:10] for r in per] == [
        ("000000", "未知区县", 1, 0, 1, 0.0, 0, 1, 0, None),
        ("130102", "长安区", 7, 5, 2, pytest.approx(5 / 7), 5, 2, 6, pytest.approx(7000 / 6)),
        ("130104", "桥西区", 4, 1, 3, 0.25, 4, 0, 11, pytest.approx(4000 / 11)),
        ("130100", "全市合计", 12, 6, 6, 0.5, 9, 3, 17, pytest.approx(12000 / 17))]
    assert _block(ev, "全市每周事件数") == [(dt.datetime(2025, 6, 16), 4, 1, 5), (dt.datetime(2025, 6, 23), 5, 2, 7)]
    assert sorted(type(c).__name__ for c in ev._charts) == ["BarChart", "LineChart"]

    hh = _block(book["家庭户"], "分区县")
    assert [r[:5] for r in hh] == [("130102", "长安区", 3, 7, pytest.approx(7 / 3)), ("130104", "桥西区", 2, 3, 1.5),
                                   ("130100", "全市合计", 5, 10, 2.0)]
    assert book["家庭户"]._charts == []
    hot = book["网格热点"]
    assert _block(hot, "分区县汇总") == [("130102", "长安区", 2, 7), ("130104", "桥西区", 1, 3),
                                   ("130100", "全市合计", 3, 10)]
    assert len(_block(hot, "明细")) == 3  # grid cells only
    mig = book["人口迁移"]
    assert _block(mig, "全市趋势") == [(dt.datetime(2025, 5, 1), 4, 4, 0), (dt.datetime(2025, 6, 1), 2, 0, 2)]
    assert [type(c).__name__ for c in mig._charts] == ["LineChart"]

    defs = {(r[0], r[1]): r for r in book["指标说明"].iter_rows(min_row=4, values_only=True)}
    assert defs[("家庭户", "户数")][2:] == ("户", "marts.population_households.households", "Households (户).")
    assert defs[("网格事件", "未结案")][4] == "事件数 − 已结案（当前状态非“已结案”）"
    assert defs[("指标定义", "平均家庭户规模")][3] == "marts.population_households.mean_household_size"
    assert defs[("指标定义", "结案率")][4].startswith("定义：sum(closed) / sum(events)；分子：")

    # a rerun of the run: the same bytes, the file left as it was; another run: only the generated-at differs
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert wb.build_workbook(spark, own, SNAP, run_id="cli:test:1", generated_at=RUN_TIME) == path
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def test_another_run_changes_only_the_generated_at_and_the_stage_writes_the_workbook(spark, settings, tmp_path):
    own = _lakehouse(spark, settings, tmp_path)
    path = wb.build_workbook(spark, own, SNAP, run_id="cli:test:1", generated_at=RUN_TIME)
    before = path.read_bytes()
    first = _values(path)
    wb.build_workbook(spark, own, SNAP, run_id="cli:test:1", generated_at=RUN_TIME + dt.timedelta(hours=1))
    second = _values(path)
    assert {k: v for k, v in second.items() if k != "目录"} == {k: v for k, v in first.items() if k != "目录"}
    changed = [(i, a, b) for i, (a, b) in enumerate(zip(first["目录"], second["目录"], strict=True)) if a != b]
    assert changed == [(4, ("生成时间（Asia/Shanghai）", "2025-07-01 08:05:00", None),
                        ("生成时间（Asia/Shanghai）", "2025-07-01 09:05:00", None))]

    # the analysis stage writes it after the report and returns its path (the DAG task's result)
    out = run_analysis(spark, own, SNAP, run_id="cli:test:1", run_time=RUN_TIME)
    assert out["workbook"] == str(path) and out["report"] is not None
    assert path.read_bytes() == before  # the same run's time again: the same bytes


def test_a_new_mart_family_is_one_registry_entry():
    """A family the registry does not know yet (e.g. a new theme mart) is one Family entry: its sheet shows the
    date's rows per district with the total row (ratios recomputed from the sums)."""
    frames = {"marts.grid_new_kpis": pd.DataFrame({
        "period_end": [SNAP, SNAP, EARLIER], "district_code": ["130104", "130102", "130102"],
        "cases": [3, 1, 50], "solved": [3, 0, 50], "rate": [1.0, 0.0, 1.0]})}
    family = wb.Family("marts.grid_new_kpis", "新专题", (
        wb.Col("cases", "案件", "件"), wb.Col("rate", "办结率", "%", (("solved",), ("cases",), 1)),
        wb.Col("solved", "办结", "件")), where="cases < 50")
    [sheet] = wb.build_workbook_data(frames, SNAP, (family,))
    [block] = sheet.blocks
    assert block.frame.values.tolist() == [["130102", "长安区", 1, 0.0, 0], ["130104", "桥西区", 3, 1.0, 3],
                                           ["130100", "全市合计", 4, 0.75, 3]]
    assert [c.number_format for c in block.cols] == [None, None, "#,##0", "0.0%", "#,##0"]


def test_a_family_with_detail_keys_gets_a_per_district_summary():
    """Detail rows (here per grid worker, district from the grid code; a worker without grid under 未知区县) are
    summarised per district: a count of rows, the summed columns and the ratios recomputed from them."""
    frames = {"marts.grid_workers_new": pd.DataFrame({
        "worker_id": ["W2", "W1", "unknown"], "grid_code": ["130102001001002", "130102001001001", None],
        "reported": [2, 3, 1], "closed": [1, 3, 0], "rate": [0.5, 1.0, 0.0]})}
    family = wb.Family("marts.grid_workers_new", "网格员", (
        wb.Col("reported", "上报", "件"), wb.Col("closed", "结案", "件"),
        wb.Col("rate", "结案率", "%", (("closed",), ("reported",), 1))),
        keys=(wb.Col("worker_id", "网格员", total=None),), count_label="网格员数", district_from="grid_code")
    [sheet] = wb.build_workbook_data(frames, SNAP, (family,))
    summary, detail = sheet.blocks
    assert summary.frame.values.tolist() == [["000000", "未知区县", 1, 1, 0, 0.0], ["130102", "长安区", 2, 5, 4, 0.8],
                                             ["130100", "全市合计", 3, 6, 4, pytest.approx(4 / 6)]]
    assert [c.label for c in summary.cols][2:] == ["网格员数", "上报", "结案", "结案率"]
    assert detail.frame[["district_code", "worker_id", "reported"]].values.tolist() == [
        ["000000", "unknown", 1], ["130102", "W1", 3], ["130102", "W2", 2]]
