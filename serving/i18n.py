"""The pages' own words in Chinese (the default) and English; a cookie remembers the choice.

Codes in the data (items, levels, reasons...) are named in `serving.labels`; this module holds the
sentences and headings of the pages. A missing English text falls back to the Chinese one, and a
missing key shows as itself, so a forgotten entry is visible rather than fatal.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANGUAGE_COOKIE = "lang"

TEXT: dict[str, tuple[str, str]] = {
    # frame
    "brand": ("学生数字画像", "Student Portrait"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "switch_language": ("English", "中文"),
    "print": ("打印", "Print"),
    "print_layout": ("打印版（家长会）", "Print layout (parent meeting)"),
    "back_home": ("返回首页", "Back to home"),
    "home": ("首页", "Home"),
    "not_available": ("暂未提供", "Not yet available"),
    "model_not_scored": ("{model} 模型尚未评分写入在线特征库，此处不显示任何估计值。",
                         "The {model} model has not been scored into the online store yet; no estimate is shown."),
    "city_missing": ("全市及格率尚未以差分隐私方式发布（portrait statistics）。",
                     "No city pass rates released with differential privacy yet (portrait statistics)."),
    "no_data": ("暂无数据", "No data yet"),
    "sign_in_failed": ("用户名或密码不正确，请检查后重试；如仍失败，账号可能已停用，请联系学校数据专员。",
                       ("Incorrect username or password. Check both and try again; if it still fails, your account "
                       "may be disabled: ask your school's data officer.")),
    "too_many_failures": ("登录失败次数过多，请约 {minutes} 分钟后再试；如忘记密码，请联系学校数据专员重置。",
                          ("Too many failed sign-ins. Wait about {minutes} minute(s); if you forgot your password, "
                          "ask your school's data officer to reset it.")),
    # provenance
    "source_indicator": ("依据学校记录精确计算", "Computed exactly from school records"),
    "source_model": ("差分隐私模型 {name} v{version}，ε={epsilon}，δ={delta}",
                     "DP model {name} v{version}, ε={epsilon}, δ={delta}"),
    "source_release": ("差分隐私发布 {release}（{as_of}），ε={epsilon}", "DP release {release} ({as_of}), ε={epsilon}"),
    "model_note": ("由差分隐私模型估计，仅供关注参考，不是诊断。",
                   "Estimated by a differentially private model: a prompt for attention, not a diagnosis."),
    # home
    "your_classes": ("您的班级", "Your classes"),
    "your_schools": ("您的学校", "Your schools"),
    "your_center": ("您的培训中心", "Your training center"),
    "no_scope": ("您的账号尚未分配范围，请联系数据专员。", "Nothing is assigned to your account yet: ask the data officer."),
    # errors
    "forbidden_title": ("无权查看", "Not allowed"),
    "not_found_title": ("暂无数据", "Not found"),
    "role_forbidden": ("您的角色（{role}）无权查看{resource}。如确有需要，请向数据专员申请相应角色的账号。",
                       ("Your role ({role}) cannot open {resource}. If you need it, ask the data officer for an "
                       "account with that role.")),
    "out_of_scope.student": ("您的班级或学校中没有这个编号的学生。请核对编号；如学生刚转入，请联系数据专员更新您的范围。",
                             ("No student with this key is in your classes or schools. Check the key; if the student "
                             "joined recently, ask the data officer to update your scope.")),
    "out_of_scope.class": ("这不是您的班级。请核对班级编号；如您接手了新班级，请联系数据专员添加。",
                           ("This class is not one of yours. Check the class id; if you took over a class, ask the "
                           "data officer to add it.")),
    "out_of_scope.school": ("这不是您的学校。请核对学校编号；如有变动，请联系数据专员。",
                            "This school is not one of yours. Check the school id; ask the data officer if it changed."),
    "out_of_scope.center": ("这不是您的培训中心。请联系数据专员核对账号。",
                            "This training center is not yours. Ask the data officer to check your account."),
    "out_of_scope.course": ("您的培训中心没有这个编号的课程。请在中心概览中核对课程编号。",
                            "No course with this id belongs to your center. Check the id in your center's overview."),
    "out_of_scope.teacher": ("没有这个编号的教师报名您中心的课程或在其建议邀请名单中。请在课程的邀请名单或参训名单中核对。",
                             ("No teacher with this key has enrolled in or been invited to one of your center's "
                             "courses. Check the key in a course's invite list or list of enrolled teachers.")),
    "not_found.class": ("您的班级在特征库中还没有学生。新班级会在下一次数据发布后出现；否则请核对班级编号。",
                        ("Your class has no students in the feature store yet. A new class appears after the next "
                        "data publish; otherwise check the id.")),
    "not_found.school": ("您的学校在特征库中还没有学生。下一次数据发布后会出现；否则请核对学校编号。",
                         "Your school has no students in the feature store yet; they appear after the next publish."),
    "not_found.center": ("您的中心在课程目录中还没有课程，请联系数据专员导入培训课程目录。",
                         "Your center has no courses in the catalog yet: ask the data officer to ingest it."),
    "not_found.model": ("没有这个名称的已注册模型。", "No registered model has this name."),
    "resource.student_portrait": ("学生成长画像", "student portraits"),
    "resource.student_fitness": ("学生体质健康记录", "students' fitness records"),
    "resource.class_portraits": ("班级画像", "class portraits"),
    "resource.school_fitness": ("学校体测预警与统计", "school fitness warnings and statistics"),
    "resource.teacher_portrait": ("教师画像与推荐", "teacher portraits and recommendations"),
    "resource.course_invites": ("课程邀请名单", "course invite lists"),
    "resource.center_overview": ("培训中心概览", "training center overviews"),
    "resource.privacy_ledger": ("隐私预算账本", "the privacy ledger"),
    "resource.model_cards": ("模型卡片与审计", "model cards and audits"),
    "resource.ingest_report": ("数据导入报告", "ingest reports"),
    "resource.audit_log": ("访问审计日志", "the access audit log"),
    # class
    "class_overview": ("班级概览", "Class overview"),
    "students": ("学生", "Students"),
    "student": ("学生", "Student"),
    "warnings_high": ("重点关注", "High"),
    "warnings_watch": ("留意", "Watch"),
    "class_outcomes": ("本学期班级情况", "The class this term"),
    "mean_score_share": ("平均得分率", "Mean share of full mark"),
    "pass_rate": ("及格率", "Pass rate"),
    "fitness_pass_rate": ("体测及格率", "Fitness pass rate"),
    "attendance_rate": ("出勤率", "Attendance rate"),
    "mean_fitness_total": ("体测平均分", "Mean fitness total"),
    "trend_academics": ("学业", "Grades"),
    "trend_fitness": ("体测", "Fitness"),
    "trend_attendance": ("出勤", "Attendance"),
    "open_portrait": ("查看画像", "Open portrait"),
    "mini_radar_note": ("小雷达图为五育得分（0–100），依据本学期学校记录精确计算。",
                        "Each small radar shows the five domains (0–100), computed exactly from this term's records."),
    # student
    "growth_portrait": ("学生成长画像", "Student growth portrait"),
    "class": ("班级", "Class"),
    "grade": ("年级", "Grade"),
    "sex": ("性别", "Sex"),
    "school_year": ("学年", "School year"),
    "student_key_note": ("学生编号为化名，不含姓名或学籍号。", "The key is a pseudonym, never a name or school id."),
    "five_domain": ("五育发展（德智体美劳）", "Five domains (moral, intellect, physical, aesthetic, labor)"),
    "five_domain_student": ("本人", "Student"),
    "five_domain_norm": ("同年级同性别中位数", "Median, same grade and sex"),
    "five_domain_p25": ("P25", "P25"),
    "five_domain_p75": ("P75", "P75"),
    "domain": ("维度", "Domain"),
    "score": ("得分", "Score"),
    "position": ("所处区间", "Position"),
    "standing": ("评价", "Standing"),
    "strengths": ("优势", "Strengths"),
    "weaknesses": ("待加强", "To strengthen"),
    "none_listed": ("无", "none"),
    "standing_rule": ("优势：得分不低于同年级同性别常模的 P75（前四分之一）；待加强：低于 P25（后四分之一）。"
                      "常模为差分隐私发布，小样本时误差较大，仅供参考。",
                      ("Strength: at or above the P75 of the same grade and sex (top quarter); to strengthen: below "
                       "its P25 (bottom quarter). The norms are a DP release; in a small cohort they are "
                       "rough, so read them as a guide.")),
    "growth": ("学科成长百分位（纵向）", "Growth percentiles by subject (vertical)"),
    "growth_note": ("成长百分位：与历史成绩相同的学生相比，本学期成绩所处的位置（1–99）。"
                    "学科较多时默认显示语文、数学、英语，点击图例可显示其他学科。",
                    ("Growth percentile: where this term's score falls among students with the same history (1–99). "
                     "With many subjects the chart opens on Chinese, math and English; click the legend for the others.")),
    "academics": ("学业", "Academics"),
    "subjects": ("学科数", "Subjects"),
    "failed_subjects": ("不及格学科", "Failed subjects"),
    "imbalance": ("偏科程度", "Subject imbalance"),
    "trend": ("趋势", "Trend"),
    "conduct_arts": ("德育、美育与劳动", "Conduct, arts and labor"),
    "volunteer_hours": ("志愿服务（小时）", "Volunteer hours"),
    "honors": ("荣誉", "Honors"),
    "discipline_events": ("违纪记录", "Discipline records"),
    "arts_hours": ("艺术实践（小时）", "Arts practice (hours)"),
    "labor_hours": ("劳动实践（小时）", "Labor practice (hours)"),
    "literacy": ("素养测评", "Literacy"),
    "literacy_digital": ("数字素养", "Digital"),
    "literacy_reading": ("阅读素养", "Reading"),
    "literacy_science": ("科学素养", "Science"),
    "attendance": ("出勤", "Attendance"),
    "days_absent": ("缺勤天数", "Days absent"),
    "fitness": ("体质健康", "Fitness"),
    "fitness_totals": ("体测总分历年变化", "Total fitness score by school year"),
    "fitness_items": ("各项得分历年变化", "Item scores by school year"),
    "fitness_levels_note": ("虚线为等级线：及格 60、良好 80、优秀 90；总分 = 标准分 + 加分。单项得分为 0–100 分，不是原始成绩。",
                            ("Dashed lines: pass 60, good 80, excellent 90; total = standard score + bonus. Item "
                            "scores are points 0–100, not raw measurements.")),
    "item": ("项目", "Item"),
    "total": ("总分", "Total"),
    "level": ("等级", "Level"),
    "bmi": ("BMI", "BMI"),
    "bmi_category": ("BMI 分类", "BMI category"),
    "latest_test": ("最新体测", "Latest test"),
    "standard_bonus": ("标准分 + 加分", "Standard + bonus"),
    "no_fitness": ("暂无体测记录", "No fitness test yet"),
    "untested": ("未测", "not tested"),
    "fitness_risk": ("下次体测不及格风险", "Risk of failing the next fitness test"),
    "academic_risk": ("学业风险", "Academic risk"),
    "academic_risk_full": ("下学期学业风险（学科不及格或成绩大幅下滑）",
                           "Risk of failing a subject or dropping sharply next term"),
    "model_level": ("模型等级", "Model level"),
    "model_reasons": ("模型依据", "What the model weighed"),
    "reference": ("参照", "against"),
    "model_reasons_note": ("模型依据：对该生风险影响最大的几项，每项都与训练前固定的中性值比较（单项得分比及格线 60 分，"
                           "变化比“无变化”）；↑ 推高风险，↓ 降低风险。等级按固定阈值：红色 ≥ 50%，黄色 ≥ 25%。",
                           ("What the model weighed: the features that move this student's risk most, each against a "
                            "neutral value fixed before training (a pass of 60 for a score, no change for a trend); "
                            "↑ raises the risk, ↓ lowers it. Levels at fixed thresholds: red ≥ 50 %, amber ≥ 25 %.")),
    "class_growth": ("各学科成长中位数（增值评价）", "Median growth percentile by subject (value added)"),
    "class_growth_note": ("本班学生在该学科成长百分位的中位数（{term}）。50 为典型成长：高于 50 表示本班学生的进步多于"
                          "全市历史成绩相同的学生。不足 10 人的学科不显示。",
                          ("The median of the class's growth percentiles in the subject ({term}). 50 is typical growth: "
                           "above 50, the class grew more than students of the city with the same history. Subjects "
                           "with fewer than 10 students are left out.")),
    "subject": ("学科", "Subject"),
    "median_growth": ("成长中位数", "Median growth percentile"),
    "students_counted": ("人数", "Students"),
    "warnings": ("预警与建议", "Warnings and suggested actions"),
    "no_warnings": ("暂无预警。", "No warnings."),
    "reason": ("原因", "Reason"),
    "suggested_action": ("建议", "Suggested action"),
    "items_behind": ("相关项目", "Items"),
    "risk": ("风险", "Risk"),
    "norms_missing": ("尚未发布该年级性别的差分隐私常模。", "No DP norms released for this grade and sex yet."),
    "signature_line": ("班主任签名：__________　　家长签名：__________", "Class teacher: __________   Parent: __________"),
    # health staff
    "school_fitness": ("学校体质健康预警", "School fitness warnings"),
    "filters": ("筛选", "Filters"),
    "all": ("全部", "All"),
    "apply": ("应用", "Apply"),
    "sort": ("排序", "Sort"),
    "sort_risk": ("按风险", "By risk"),
    "sort_total": ("按总分（低到高）", "By total (lowest first)"),
    "sort_change": ("按变化（下降最多）", "By change (largest drop)"),
    "change": ("较上次", "Change"),
    "warning_level": ("预警级别", "Level"),
    "shown_of": ("共 {total} 人，显示 {shown} 人", "{shown} of {total} shown"),
    "grade_statistics": ("各年级体测情况（本校）与全市（差分隐私发布）",
                         "By grade: this school (exact) and the city (DP release)"),
    "school_rate": ("本校及格率", "School pass rate"),
    "city_rate": ("全市及格率", "City pass rate"),
    "tested": ("参测人数", "Tested"),
    "student_fitness": ("学生体质健康档案", "Student fitness record"),
    "open_fitness": ("查看档案", "Open record"),
    "risk_model_missing": ("体测风险模型尚未评分，以下仅依据国家标准规则预警。",
                           "The fitness-risk model has not been scored yet; warnings follow the standard's rules only."),
    # training center
    "center_overview": ("培训中心概览", "Training center overview"),
    "courses": ("课程", "Courses"),
    "course": ("课程", "Course"),
    "dimensions": ("素养维度", "Dimensions"),
    "hours": ("学时", "Hours"),
    "enrolled": ("报名", "Enrolled"),
    "completed": ("完成", "Completed"),
    "completion_rate": ("完成率", "Completion rate"),
    "satisfaction": ("满意度", "Satisfaction"),
    "teachers_trained": ("参训教师", "Teachers trained"),
    "invite_list": ("建议邀请的教师", "Teachers to invite"),
    "expected_gain": ("预期提升（分）", "Expected gain (points)"),
    "main_dimension": ("主要提升维度", "Dimension raised most"),
    "invite_gain_note": ("预期提升：模型估计该教师参加本课程后，在课程针对的各素养维度上提升的分数之和（各维度 0–100 分）。"
                         "名单按预期提升从高到低排列。",
                         ("Expected gain: the points the model expects the teacher to gain on the dimensions this "
                          "course targets, summed (each dimension scores 0–100). Highest expected gain first.")),
    "recommendation_gain_note": ("预期提升：模型估计该教师参加课程后，其最薄弱的素养维度提升的分数之和（各维度 0–100 分）。",
                                 ("Expected gain: the points the model expects the teacher to gain on their weakest "
                                  "dimensions, summed (each dimension scores 0–100).")),
    "reason_targets_weakest": ("针对该教师{rank}的「{dimension}」（现 {score} 分）：预期 {gain} 分",
                               "targets {dimension}, the teacher's {rank} ({score}): expected {gain}"),
    "reason_dimension_gain": ("「{dimension}」现 {score} 分：预期 {gain} 分", "{dimension} now {score}: expected {gain}"),
    "reason_off_target": ("课程针对{targets}，均非该教师最薄弱的维度（{weakest}）：对后者预期 {gain} 分",
                          "targets {targets}, none of the teacher's weakest ({weakest}): expected {gain} on them"),
    "weakest_1": ("最薄弱维度", "weakest"),
    "weakest_2": ("第二薄弱维度", "2nd weakest"),
    "weakest_n": ("第 {n} 薄弱维度", "weakest no. {n}"),
    "invited_count": ("建议邀请", "To invite"),
    "invited_here": ("本中心建议邀请其参加的课程", "Your courses that invite this teacher"),
    "courses_here": ("在本中心报名的课程", "Courses taken at your center"),
    "other_center": ("其他中心", "other center"),
    "already_enrolled": ("已报名", "enrolled"),
    "enrolled_teachers": ("已参训教师", "Teachers enrolled"),
    "teacher_portrait": ("教师数字素养画像", "Teacher digital-literacy portrait"),
    "teacher": ("教师", "Teacher"),
    "digital_literacy": ("数字素养（JY/T 0646—2022 五个维度）", "Digital literacy (the five JY/T 0646—2022 dimensions)"),
    "latest_assessment": ("最近一次测评", "Latest assessment"),
    "previous_assessment": ("上一次测评", "Previous assessment"),
    "training_record": ("培训记录", "Training record"),
    "hours_completed": ("累计完成学时", "Hours completed"),
    "courses_completed": ("完成课程", "Courses completed"),
    "courses_enrolled": ("报名课程", "Courses enrolled"),
    "recommended_courses": ("推荐课程及理由", "Recommended courses and why"),
    "teacher_scope_note": ("培训中心只能看到教师的数字素养与培训情况，看不到任何学生数据。",
                           "A training center sees a teacher's digital literacy and training only, never student data."),
    # data officer
    "officer": ("数据中心", "Data center"),
    "ingest_report": ("数据导入与隔离", "Ingest and quarantine"),
    "lake_version": ("数据湖版本", "Lake version"),
    "table": ("数据表", "Table"),
    "rows": ("行数", "Rows"),
    "quarantined": ("隔离行数", "Quarantined"),
    "column": ("字段", "Column"),
    "rule": ("规则", "Rule"),
    "no_quarantine": ("最近一次导入没有被隔离的行。", "The last ingest quarantined no rows."),
    "ledger": ("隐私预算账本", "Privacy budget ledger"),
    "release": ("数据发布（学年）", "Release (school year)"),
    "budget_used": ("已用", "Used"),
    "budget_left": ("剩余", "Left"),
    "spends": ("支出明细", "Spends"),
    "what": ("用途", "What"),
    "mechanism": ("机制", "Mechanism"),
    "when": ("时间", "When"),
    "no_release": ("尚未开启任何数据发布。", "No release opened yet."),
    "composition_note": ("组合方式：基本组合，同一数据发布的各项支出的 ε 与 δ 相加。",
                         "Composition: basic, the ε's and δ's of a release's spends add up."),
    "models": ("模型卡片", "Model cards"),
    "model": ("模型", "Model"),
    "version": ("版本", "Version"),
    "aliases": ("别名", "Aliases"),
    "audits": ("成员推断审计", "Membership-inference audits"),
    "audit_target": ("对象", "Target"),
    "attack": ("攻击", "Attack"),
    "epsilon_lower_bound": ("经验 ε 下界", "Empirical ε lower bound"),
    "model_outputs": ("在线库中的模型输出", "Model outputs in the online store"),
    "available": ("已就绪", "Available"),
    "shown_to": ("显示给：", "shown to: "),
    "shown_to_nobody": ("不向任何角色显示（原因见 serving/access.py）", "no role (why: serving/access.py)"),
    "no_models": ("尚未注册模型。", "No model registered yet."),
    "open_card": ("查看卡片", "Open card"),
    "access_log": ("访问审计日志（最近）", "Access audit log (latest)"),
    "user": ("用户", "User"),
    "role": ("角色", "Role"),
    "key": ("化名编号", "Pseudonymous key"),
    "action": ("操作", "Action"),
    "model_card": ("模型卡片", "Model card"),
    "registry_unavailable": ("模型注册表暂时无法读取：{error}", "The model registry cannot be read: {error}"),
}


def language_of(request: Request) -> str:
    lang = request.cookies.get(LANGUAGE_COOKIE)
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def translator(lang: str) -> Callable[..., str]:
    index = 1 if lang == "en" else 0

    def t(key: str, **values) -> str:
        texts = TEXT.get(key)
        text = key if texts is None else (texts[index] or texts[0])
        return text.format(**values) if values else text

    return t
