"""Texts people read, in one place: rule names, severities, states and the phrases of crew notices.

Chinese first, English available (`notify.language`). Everything a person reads — a crew notice, the
ack page, the API's `rule_name` and `message` — takes its words from here, so a rule is called the
same thing on the phone, on the page and in the API. A rule's `message` template in the config still
overrides the message of that rule.

Lives in `devices/` (the floor) because the rule engine, the alert API and the notices all use it.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

RULE_NAMES: dict[str, dict[Language, str]] = {
    "lamp_dark": {"zh": "路灯不亮", "en": "lamp dark at night"},
    "lamp_day_burning": {"zh": "白天亮灯", "en": "lamp burning by day"},
    "lamp_power_abnormal": {"zh": "功率异常", "en": "lamp power abnormal"},
    "lamp_voltage_abnormal": {"zh": "电压异常", "en": "lamp voltage abnormal"},
    "lamp_power_factor_low": {"zh": "功率因数低", "en": "lamp power factor low"},
    "lamp_fault": {"zh": "路灯故障", "en": "lamp fault"},
    "cabinet_outage": {"zh": "配电箱停电", "en": "cabinet outage"},
    "device_offline": {"zh": "设备离线", "en": "device offline"},
    "water_level": {"zh": "积水超限", "en": "water on the road"},
    "water_rising_fast": {"zh": "水位快速上涨", "en": "water rising fast"},
    "sensor_stuck": {"zh": "传感器数值不变", "en": "sensor stuck"},
    "battery_low": {"zh": "电池电量低", "en": "battery low"},
    "notify_channel_down": {"zh": "通知通道不通", "en": "notice channel down"},
}

SEVERITY_NAMES: dict[str, dict[Language, str]] = {
    "critical": {"zh": "紧急", "en": "CRITICAL"},
    "major": {"zh": "重要", "en": "MAJOR"},
    "minor": {"zh": "次要", "en": "MINOR"},
    "warning": {"zh": "提示", "en": "WARNING"},
}

STATE_NAMES: dict[str, dict[Language, str]] = {
    "active": {"zh": "未处理", "en": "active"},
    "acknowledged": {"zh": "已确认", "en": "acknowledged"},
    "dispatched": {"zh": "已派工", "en": "dispatched"},
    "cleared": {"zh": "已恢复", "en": "cleared"},
    "closed": {"zh": "已关闭", "en": "closed"},
}

KIND_NAMES: dict[str, dict[Language, str]] = {
    "lamp": {"zh": "路灯", "en": "lamp"},
    "waterlevel": {"zh": "积水监测点", "en": "water-level point"},
    "cabinet": {"zh": "配电箱", "en": "cabinet"},
    "notify": {"zh": "通知通道", "en": "notice channel"},
}

# Phrases of notices and the ack page. Placeholders are filled with str.format.
PHRASES: dict[str, dict[Language, str]] = {
    "event.raised": {"zh": "新告警", "en": "new alert"},
    "event.up": {"zh": "告警升级", "en": "alert worse"},
    "event.reminder": {"zh": "催办提醒", "en": "reminder"},
    "event.escalation": {"zh": "超时升级", "en": "overdue, escalated"},
    "event.cleared": {"zh": "恢复", "en": "cleared"},
    "event.test": {"zh": "测试通知", "en": "test notice"},
    "label.event": {"zh": "事件", "en": "Event"},
    "label.road": {"zh": "道路", "en": "Road"},
    "label.device": {"zh": "设备", "en": "Device"},
    "label.pole": {"zh": "灯杆", "en": "Pole"},
    "label.point": {"zh": "积水点", "en": "Point"},
    "label.cabinet": {"zh": "配电箱", "en": "Cabinet"},
    "label.coords": {"zh": "坐标", "en": "Coordinates"},
    "label.map": {"zh": "地图", "en": "Map"},
    "label.since": {"zh": "发生时间", "en": "Since"},
    "label.value": {"zh": "数值", "en": "Value"},
    "label.level": {"zh": "级别", "en": "Level"},
    "label.severity": {"zh": "等级", "en": "Severity"},
    "label.state": {"zh": "状态", "en": "State"},
    "label.alert_id": {"zh": "告警编号", "en": "Alert id"},
    "label.detail": {"zh": "详情", "en": "Detail"},
    "label.link": {"zh": "查看", "en": "Open"},
    "label.ack_link": {"zh": "一键确认", "en": "Acknowledge"},
    "label.cleared_at": {"zh": "恢复时间", "en": "Cleared at"},
    "label.escalation": {"zh": "升级次数", "en": "Escalation"},
    "digest.title_road": {"zh": "{road} {n} 条新告警", "en": "{road}: {n} alert changes"},
    "digest.title_many": {"zh": "{n} 条新告警（{roads}）", "en": "{n} alert changes ({roads})"},
    "digest.more_roads": {"zh": "等 {n} 条道路", "en": "and {n} more roads"},
    "digest.intro": {
        "zh": "告警较多，已合并为一条通知：",
        "en": "Many changes at once, merged into one notice:",
    },
    "road.unknown": {"zh": "未知道路", "en": "unknown road"},
    "test.body": {
        "zh": "这是一条测试通知，收到即表示该通道可用。",
        "en": "This is a test notice: receiving it means this channel works.",
    },
    "page.ack": {"zh": "确认", "en": "Acknowledge"},
    "page.note": {"zh": "备注（可选）", "en": "Note (optional)"},
    "page.history": {"zh": "处理记录", "en": "History"},
    "page.acked": {"zh": "已确认，谢谢。", "en": "Acknowledged, thank you."},
    "page.not_active": {
        "zh": "此告警当前状态为「{state}」，无需再确认。",
        "en": "This alert is {state}; there is nothing to acknowledge.",
    },
    "page.refused": {"zh": "链接无效", "en": "Link not valid"},
    "refuse.expired": {
        "zh": "此链接已过期，请在控制中心页面处理。",
        "en": "This link has expired; please use the control-centre page.",
    },
    "refuse.bad": {
        "zh": "此链接无效（可能被修改，或不属于此告警/班组）。",
        "en": "This link is not valid (altered, or not for this alert or crew).",
    },
    "refuse.off": {
        "zh": "未启用一键确认链接。",
        "en": "One-tap acknowledge links are switched off.",
    },
    "refuse.missing": {"zh": "没有这条告警。", "en": "There is no such alert."},
    "refuse.unavailable": {
        "zh": "服务正在重启，请稍后再试。",
        "en": "The service is restarting; please try again in a moment.",
    },
    "channel.down": {
        "zh": "班组 {crew} 的通知通道 {channel} 已 {hours:g} 小时发送失败：{error}",
        "en": "Crew {crew}: notice channel {channel} has failed for {hours:g} h: {error}",
    },
    "channel.up": {
        "zh": "班组 {crew} 的通知通道 {channel} 已恢复",
        "en": "Crew {crew}: notice channel {channel} works again",
    },
}


def language(value: str | None) -> Language:
    return "en" if value == "en" else "zh"


def rule_name(rule: str, lang: Language = "zh") -> str:
    """A rule in words; a custom rule without an entry keeps its id."""
    names = RULE_NAMES.get(rule)
    return names[lang] if names else rule


def severity_name(severity: str, lang: Language = "zh") -> str:
    names = SEVERITY_NAMES.get(severity)
    return names[lang] if names else severity


def state_name(state: str, lang: Language = "zh") -> str:
    names = STATE_NAMES.get(state)
    return names[lang] if names else state


def kind_name(kind: str, lang: Language = "zh") -> str:
    names = KIND_NAMES.get(kind)
    return names[lang] if names else kind


def phrase(key: str, lang: Language = "zh", **fields: object) -> str:
    text = PHRASES[key][lang]
    return text.format(**fields) if fields else text


# The language of texts built without a request at hand (the API's `rule_name`): set once at start
# from `notify.language`.
_default: Language = "zh"


def set_language(lang: str) -> None:
    global _default
    _default = language(lang)


def default_language() -> Language:
    return _default


def standard_message(
    rule: str,
    active: bool,
    *,
    lang: Language,
    road: str | None = None,
    point: str | None = None,
    device: str = "",
    value: float | None = None,
    unit: str = "",
    level: int | None = None,
) -> str:
    """The standard Chinese message of an alert: `运河路 运河路下穿 WL-017：积水超限，2 级，当前 45 cm`.

    (English messages keep the rule engine's own, more detailed wording.)"""
    where = " ".join(p for p in (road, point, device) if p)
    name = rule_name(rule, lang)
    if not active:
        return f"{where}：{name}已恢复" if lang == "zh" else f"{where}: {name} cleared"
    parts = [name]
    if level is not None:
        parts.append(f"{level} 级" if lang == "zh" else f"level {level}")
    if value is not None and unit:
        parts.append(f"当前 {value:g} {unit}" if lang == "zh" else f"now {value:g} {unit}")
    sep = "，" if lang == "zh" else ", "
    return f"{where}{'：' if lang == 'zh' else ': '}{sep.join(parts)}"


def group_message_zh(
    rule: str, key: str, road: str | None, active: bool, count: int, members: list[str]
) -> str:
    """`洸河路 配电箱 C1：配电箱停电，6 盏灯不亮、离线或无电（L1、L2 …）`"""
    where = " ".join(p for p in (road, f"配电箱 {key}") if p)
    if not active:
        return f"{where}：{rule_name(rule, 'zh')}已恢复"
    names = "、".join(members[:10]) + (f" 等 {count} 个" if count > 10 else "")
    return f"{where}：{rule_name(rule, 'zh')}，{count} 盏灯不亮、离线或无电（{names}）"
