"""Chinese display names (English in parentheses) for codes in portrait records."""

from __future__ import annotations

# Item order follows the national standard's test card, so tables read like the paper form.
ITEM_LABELS = {
    "vital_capacity": "肺活量 (vital capacity)",
    "run_50m": "50米跑 (50 m sprint)",
    "sit_and_reach": "坐位体前屈 (sit and reach)",
    "rope_skip_1min": "1分钟跳绳 (1-min rope skip)",
    "sit_up_1min": "1分钟仰卧起坐 (1-min sit-ups)",
    "shuttle_50x8": "50米×8往返跑 (50 m × 8 shuttle)",
    "standing_long_jump": "立定跳远 (standing long jump)",
    "pull_up": "引体向上 (pull-ups)",
    "run_800m": "800米跑 (800 m run)",
    "run_1000m": "1000米跑 (1000 m run)",
}

LEVEL_LABELS = {
    "excellent": "优秀 (excellent)",
    "good": "良好 (good)",
    "pass": "及格 (pass)",
    "fail": "不及格 (fail)",
}

BMI_CATEGORY_LABELS = {
    "underweight": "低体重 (underweight)",
    "normal": "正常 (normal)",
    "overweight": "超重 (overweight)",
    "obese": "肥胖 (obese)",
}

SEX_LABELS = {"m": "男 (male)", "f": "女 (female)"}

GRADE_LABELS = {
    1: "一年级", 2: "二年级", 3: "三年级", 4: "四年级", 5: "五年级", 6: "六年级",
    7: "初一", 8: "初二", 9: "初三", 10: "高一", 11: "高二", 12: "高三",
}

ROLE_LABELS = {
    "class_teacher": "班主任 (class teacher)",
    "health_staff": "校医/保健人员 (health staff)",
    "training_center": "培训中心 (training center)",
    "data_officer": "数据专员 (data officer)",
}
