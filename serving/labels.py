"""Display names of the codes in portraits, in Chinese and English: `label(kind, code, lang)`; and how a
risk model's feature values read (`feature_value`)."""

from __future__ import annotations

ITEM = {
    # Item order follows the national standard's test card, so tables read like the paper form.
    "vital_capacity": ("肺活量", "Vital capacity"),
    "run_50m": ("50米跑", "50 m sprint"),
    "sit_and_reach": ("坐位体前屈", "Sit and reach"),
    "rope_skip_1min": ("1分钟跳绳", "1-min rope skip"),
    "sit_up_1min": ("1分钟仰卧起坐", "1-min sit-ups"),
    "shuttle_50x8": ("50米×8往返跑", "50 m × 8 shuttle"),
    "standing_long_jump": ("立定跳远", "Standing long jump"),
    "pull_up": ("引体向上", "Pull-ups"),
    "run_800m": ("800米跑", "800 m run"),
    "run_1000m": ("1000米跑", "1000 m run"),
}
LEVEL = {"excellent": ("优秀", "Excellent"), "good": ("良好", "Good"), "pass": ("及格", "Pass"),
         "fail": ("不及格", "Fail")}
BMI_CATEGORY = {"underweight": ("低体重", "Underweight"), "normal": ("正常", "Normal"),
                "overweight": ("超重", "Overweight"), "obese": ("肥胖", "Obese")}
SEX = {"m": ("男", "Male"), "f": ("女", "Female")}
GRADE = {
    1: ("一年级", "Grade 1"), 2: ("二年级", "Grade 2"), 3: ("三年级", "Grade 3"), 4: ("四年级", "Grade 4"),
    5: ("五年级", "Grade 5"), 6: ("六年级", "Grade 6"), 7: ("初一", "Grade 7"), 8: ("初二", "Grade 8"),
    9: ("初三", "Grade 9"), 10: ("高一", "Grade 10"), 11: ("高二", "Grade 11"), 12: ("高三", "Grade 12"),
}
ROLE = {
    "class_teacher": ("班主任", "Class teacher"),
    "health_staff": ("校医/保健人员", "Health staff"),
    "training_center": ("培训中心", "Training center"),
    "data_officer": ("数据专员", "Data officer"),
}
DOMAIN = {"de": ("德", "Moral"), "zhi": ("智", "Intellect"), "ti": ("体", "Physical"), "mei": ("美", "Aesthetic"),
          "lao": ("劳", "Labor")}
DIMENSION = {
    "awareness": ("数字化意识", "Digital awareness"),
    "knowledge_skills": ("数字技术知识与技能", "Knowledge and skills"),
    "application": ("数字化应用", "Digital application"),
    "responsibility": ("数字社会责任", "Social responsibility"),
    "development": ("专业发展", "Professional development"),
}
WARNING_LEVEL = {"high": ("重点关注", "High"), "watch": ("留意", "Watch")}
SOURCE = {"rule": ("依据记录", "From records"), "model": ("模型估计", "Model estimate")}
BAND = {"below_p10": ("低于P10", "below P10"), "p10_p25": ("P10–P25", "P10–P25"), "p25_p50": ("P25–P50", "P25–P50"),
        "p50_p75": ("P50–P75", "P50–P75"), "p75_p90": ("P75–P90", "P75–P90"), "above_p90": ("高于P90", "above P90")}
STANDING = {"strength": ("优势", "Strength"), "weakness": ("待加强", "To strengthen")}
TREND = {"up": ("↑", "↑"), "down": ("↓", "↓"), "flat": ("→", "→")}
COURSE_LEVEL = {"basic": ("初级", "Basic"), "intermediate": ("中级", "Intermediate"), "advanced": ("高级", "Advanced")}
SUBJECT = {
    "chinese": ("语文", "Chinese"), "math": ("数学", "Math"), "english": ("英语", "English"),
    "physics": ("物理", "Physics"), "chemistry": ("化学", "Chemistry"), "biology": ("生物", "Biology"),
    "history": ("历史", "History"), "geography": ("地理", "Geography"), "politics": ("道德与法治", "Politics"),
    "science": ("科学", "Science"), "it": ("信息技术", "IT"), "music": ("音乐", "Music"), "art": ("美术", "Art"),
    "pe": ("体育", "PE"), "labor": ("劳动", "Labor"), "any": ("通用", "Any subject"),
}
# Model reasons come at both warning levels (`serving.warnings`: watch from 25 %, high from 50 %), so
# their names say "a risk", and the badge beside them says how high.
REASON = {
    "fitness_failed": ("体测总分不及格", "Fitness total below the pass line (60)"),
    "fitness_items_failed": ("有单项不及格", "Some items below the pass line"),
    "fitness_failed_streak": ("连续两年及以上不及格", "Failed two or more tests in a row"),
    "fitness_declining": ("体测总分较上次下降10分以上", "Total down 10+ points since the last test"),
    "obese": ("肥胖", "Obese (BMI)"),
    "underweight": ("低体重", "Underweight (BMI)"),
    "fitness_model_risk": ("模型提示下次体测有不及格风险", "Model: risk of failing the next test"),
    "subjects_failed": ("本学期有学科不及格", "Failed subjects this term"),
    "academic_decline": ("学业成绩连续下滑", "Grades sliding over recent terms"),
    "chronic_absence": ("缺勤率达10%以上", "Absent 10 % or more of school days"),
    "discipline": ("本学期违纪记录较多", "Several discipline records this term"),
    "academic_model_risk": ("模型提示有学业风险", "Model: academic risk"),
}
ACTION = {
    "fitness_failed": ("与家长沟通，制定每周至少3次、每次30分钟的锻炼计划，一学期后复测。",
                       "Agree an exercise plan with the parents (3 × 30 min a week) and retest after a term."),
    "fitness_items_failed": ("针对薄弱项目安排专项练习，体育课上重点指导。",
                             "Targeted practice of the weak items; extra guidance in PE lessons."),
    "fitness_failed_streak": ("建议校医评估健康状况，必要时转介专业机构。",
                              "Ask the school doctor for a health check; refer on if needed."),
    "fitness_declining": ("了解近期作息与健康变化，关注下降的项目。",
                          "Ask about recent changes in health or routine; watch the items that dropped."),
    "obese": ("结合饮食与运动干预，与家长共同跟进体重变化。",
              "Diet and exercise together with the parents; follow the weight over the term."),
    "underweight": ("关注营养摄入，必要时请校医评估。", "Check nutrition; ask the school doctor if it persists."),
    "fitness_model_risk": ("模型提示需要关注：结合上面的依据，与体育老师一起制定计划。",
                           "The model flags a risk: plan with the PE teacher using the reasons above."),
    "subjects_failed": ("与任课老师一起分析薄弱学科，安排辅导。", "Review the weak subjects with their teachers; arrange support."),
    "academic_decline": ("与学生谈心，了解下滑原因，必要时联系家长。",
                         "Talk with the student about the slide; contact the parents if needed."),
    "chronic_absence": ("核实缺勤原因，与家长沟通出勤情况。", "Check the reasons for absence; talk with the parents."),
    "discipline": ("与学生和家长沟通，制定行为改进计划。", "Meet student and parents; agree a behaviour plan."),
    "academic_model_risk": ("模型提示需要关注：结合上面的依据，与任课老师一起跟进。",
                            "The model flags a risk: follow up with the subject teachers."),
}

# The risk-warning models' features (`reasons_json`): fitness risk (the fitness_risk_v1 service) and
# academic risk (the ABC indicators of academic_risk_v1).
FEATURE = {
    "grade": ("年级", "Grade"),
    "bmi": ("BMI", "BMI"),
    "score_bmi": ("BMI得分", "BMI score"),
    **{f"score_{item}": (f"{zh}得分", f"{en} score") for item, (zh, en) in ITEM.items()},
    "standard_score": ("体测标准分", "Standard score"),
    "bonus": ("体测加分", "Bonus points"),
    "total_score": ("体测总分", "Fitness total"),
    "total_change": ("总分较上次变化", "Total change since the last test"),
    "years_failed_in_row": ("连续不及格年数", "Tests failed in a row"),
    "tests_taken": ("参测次数", "Tests taken"),
    "attendance_rate": ("本学期出勤率", "Attendance this term"),
    "rate_change": ("出勤率较上学期变化", "Attendance change since last term"),
    "attendance_rate_4t": ("近四学期出勤率", "Attendance over four terms"),
    "discipline_events": ("本学期违纪次数", "Discipline records this term"),
    "discipline_4t": ("近四学期违纪次数", "Discipline records over four terms"),
    "moral_share": ("德育评价得分率", "Conduct rating (share of full mark)"),
    "mean_share": ("学业平均得分率", "Mean share of full mark"),
    "mean_z": ("全市标准分（z）", "City-wide z-score"),
    "failed_subjects": ("不及格学科数", "Failed subjects"),
    "imbalance_sd": ("偏科程度", "Subject imbalance"),
    "trend": ("成绩趋势（每学期）", "Grade trend (per term)"),
}
# How a feature's value reads; scores, BMI and points need no entry ("41", "18.2").
FEATURE_FORMAT = {
    "attendance_rate": "percent", "attendance_rate_4t": "percent", "moral_share": "percent", "mean_share": "percent",
    "rate_change": "signed_percent", "trend": "signed_percent", "total_change": "signed", "mean_z": "signed",
    "imbalance_sd": "decimal2", "grade": "count", "tests_taken": "count", "years_failed_in_row": "count",
    "discipline_events": "count", "discipline_4t": "count", "failed_subjects": "count",
}
RISK_LEVEL = {"red": ("红色", "Red"), "amber": ("黄色", "Amber"), "green": ("绿色", "Green")}
EFFECT = {"raises": ("↑ 推高风险", "↑ raises the risk"), "lowers": ("↓ 降低风险", "↓ lowers the risk")}

KINDS = {
    "item": ITEM, "level": LEVEL, "bmi": BMI_CATEGORY, "sex": SEX, "grade": GRADE, "role": ROLE, "domain": DOMAIN,
    "dimension": DIMENSION, "warning": WARNING_LEVEL, "source": SOURCE, "band": BAND, "standing": STANDING, "trend": TREND,
    "course_level": COURSE_LEVEL, "subject": SUBJECT, "reason": REASON, "action": ACTION, "feature": FEATURE,
    "risk_level": RISK_LEVEL, "effect": EFFECT,
}


def label(kind: str, code, lang: str = "zh") -> str:
    """The display name of `code`; the code itself when it has none, an em dash for None."""
    if code is None:
        return "—"
    names = KINDS[kind].get(code)
    if names is None:
        return str(code)
    return names[1] if lang == "en" else names[0]


def feature_value(feature: str, value: float | None) -> str:
    """A risk model's feature value as a reader expects it: 87% for a rate, +2.0 for a change, 41 for a score."""
    if value is None:
        return "—"
    kind = FEATURE_FORMAT.get(feature)
    if kind == "percent":
        return f"{100 * value:.0f}%"
    if kind == "signed_percent":
        return f"{100 * value:+.1f}%"
    if kind == "signed":
        return f"{value:+.1f}"
    if kind == "decimal2":
        return f"{value:.2f}"
    if kind == "count":
        return f"{value:g}"
    return f"{value:.1f}".removesuffix(".0")
