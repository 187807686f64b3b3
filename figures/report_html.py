"""The daily report as print-ready HTML (one A4 page) and as a short text for crews' channels.

Every value from the registry (road, point, device names) is escaped: it is free text."""

from __future__ import annotations

from html import escape
from typing import Any

CLASS_ZH = {"expressway": "快速路", "main": "主干路", "secondary": "次干路", "branch": "支路"}


def _v(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✔" if value else "✘"
    return escape(f"{value}{suffix}")


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(head)}">无 none</td></tr>'
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    night = report["night"]
    overall = night["overall"]
    cases = report["cases"]["overall"]
    roads = _table(
        ["道路 Road", "等级 Class", "灯数 Lamps", "亮灯率 Rate %", "目标 Target %", "达标 OK"],
        [
            [
                _v(r["road"]),
                _v(CLASS_ZH.get(r["road_class"] or "", r["road_class"])),
                _v(r["lamps"]),
                _v(r["rate"]),
                _v(r["target"]),
                _v(r["ok"]),
            ]
            for r in night["by_road"]
        ],
    )
    by_rule = _table(
        [
            "规则 Rule",
            "新增 Opened",
            "按时响应 Acked in time",
            "按时关闭 Closed in time",
            "未关闭 Open",
            "超时 Overdue",
            "MTTA min",
            "MTTR min",
        ],
        [
            [
                _v(r["rule"]),
                _v(r["opened"]),
                _v(r["acked_in_time"]),
                _v(r["closed_in_time"]),
                _v(r["still_open"]),
                _v(r["overdue"]),
                _v(r["mtta_min"]),
                _v(r["mttr_min"]),
            ]
            for r in report["cases"]["by_rule"]
        ],
    )
    flood = _table(
        [
            "积水点 Point",
            "道路 Road",
            "峰值 Peak cm",
            "时间 At",
            "级别 Level",
            "超一级分钟 Min over L1",
        ],
        [
            [
                _v(f["point"] or f["device"]),
                _v(f["road"]),
                _v(f["peak_cm"]),
                _v(f["peak_at"]),
                _v(f["level"]),
                _v(f["minutes_over_level1"]),
            ]
            for f in report["flood"]
        ],
    )
    offline = _table(
        ["设备 Device", "类型 Kind", "道路 Road", "最后上报 Last seen"],
        [
            [_v(o["device"]), _v(o["kind"]), _v(o["road"]), _v(o["last_seen"] or "从未 never")]
            for o in report["offline"]
        ],
    )
    provisional = (
        '<p class="warn">临时报告（时段未结束）Provisional: the period is not over</p>'
        if report.get("provisional")
        else ""
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>日报 Daily report {_v(report["date"])}</title>
<style>
@page {{ size: A4; margin: 12mm; }}
body {{ font-family: "Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif;
  font-size: 9pt; color: #000; max-width: 186mm; margin: 0 auto; }}
h1 {{ font-size: 14pt; margin: 0 0 2mm; }} h2 {{ font-size: 10.5pt; margin: 3mm 0 1mm; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border: 0.2mm solid #888; padding: 0.6mm 1.2mm; text-align: left; }}
th {{ background: #eee; }} .big {{ font-size: 12pt; font-weight: bold; }} .warn {{ color: #b00; }}
</style></head><body>
<h1>城市照明与积水日报 Daily report · {_v(report["date"])}</h1>
{provisional}
<p>夜间 Night {_v(night["from"])} → {_v(night["to"])} · 生成 Made {_v(report["made_at"])}</p>
<p class="big">亮灯率 Lighting rate: {_v(overall["rate"], " %")} ({_v(overall["lamps"])} 盏 lamps)
 · 案件 Cases: {_v(cases["opened"])} 新增 opened, {_v(cases["still_open"])} 未关闭 open, {_v(cases["overdue"])} 超时 overdue,
 关闭率 closure {_v(cases["closure_rate"], " %")}</p>
<h2>各道路亮灯率 Lighting rate by road</h2>{roads}
<h2>案件 Cases by rule (MTTA {_v(cases["mtta_min"])} min, MTTR {_v(cases["mttr_min"])} min)</h2>{by_rule}
<h2>积水点超一级 Flood points over level 1</h2>{flood}
<h2>离线最久设备 Devices offline longest</h2>{offline}
</body></html>
"""


def render_text(report: dict[str, Any]) -> tuple[str, str]:
    night = report["night"]
    cases = report["cases"]["overall"]
    title = f"日报 Daily report {report['date']}"
    lines = [
        f"亮灯率 Lighting rate: {_plain(night['overall']['rate'])} %",
    ]
    for r in night["by_road"]:
        if r["ok"] is False:
            lines.append(
                f"  未达标 below target: {r['road']} {_plain(r['rate'])} % < {_plain(r['target'])} %"
            )
    lines.append(
        f"案件 Cases: {cases['opened']} opened, {cases['acked_in_time']} acked in time, "
        f"{cases['closed_in_time']} closed in time, {cases['still_open']} open, {cases['overdue']} overdue"
    )
    for f in report["flood"]:
        lines.append(
            f"积水 Flood: {f['point'] or f['device']} peak {f['peak_cm']} cm at {f['peak_at']}"
        )
    if report["offline"]:
        lines.append("离线 Offline: " + ", ".join(o["device"] for o in report["offline"]))
    return title, "\n".join(lines)


def _plain(value: Any) -> str:
    return "—" if value is None else str(value)
