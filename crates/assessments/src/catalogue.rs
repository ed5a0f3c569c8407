//! The published instrument definitions, and where each rule comes from.
//!
//! Every instrument here is version 1 of our definition. Item wording is the
//! published wording; changing any of it, an option, a band or a rule means adding a
//! version 2 beside version 1, never editing version 1 (a snapshot test of the whole
//! catalogue fails on any edit).
//!
//! **PHQ-9** (Kroenke, Spitzer & Williams, *J Gen Intern Med* 2001;16:606–613, and
//! the PHQ instruction manual). Nine items scored 0–3 ("not at all" … "nearly every
//! day"), total 0–27. Severity bands 0–4 none–minimal, 5–9 mild, 10–14 moderate,
//! 15–19 moderately severe, 20–27 severe. A total of 10 or more is the usual
//! cut-point for major depression (sensitivity and specificity 88% in the 2001
//! validation). The tenth question ("how difficult have these problems made it …")
//! is recorded but never scored. Item 9 (thoughts of being better off dead or of
//! self-harm) raises [`Flag::SelfHarm`] at any answer above 0, whatever the total.
//! **Missing items**: the manual itself gives no rule, so we follow the NHS Data
//! Dictionary's entry for the PHQ-9 (the rule NHS Talking Therapies services score
//! by): one or two missing items are given the mean of the answered items; a form
//! with more than two missing is disregarded — we refuse to score it.
//!
//! **GAD-7** (Spitzer, Kroenke, Williams & Löwe, *Arch Intern Med*
//! 2006;166:1092–1097). Seven items scored 0–3, total 0–21. Bands 0–4 minimal,
//! 5–9 mild, 10–14 moderate, 15–21 severe (the paper's cut-points 5, 10 and 15); 10
//! or more is the cut-point for further evaluation. The difficulty question is
//! recorded, not scored. **Missing items**: the NHS Data Dictionary's entry for the
//! GAD-7 gives the PHQ-9's rule (one or two prorated, more disregarded), which we
//! follow. We do not take that entry's bands (0–4, 5–10, 11–15, 15–21, which put 15
//! in two bands); the bands are the authors'.
//!
//! **PHQ-2** (Kroenke, Spitzer & Williams, *Med Care* 2003;41:1284–1292) and
//! **GAD-2** (Kroenke et al., *Ann Intern Med* 2007;146:317–325): the first two
//! items of the PHQ-9 and of the GAD-7, total 0–6, a screen positive at 3 or more.
//! They are screeners: a positive screen calls for the full PHQ-9 or GAD-7. With two
//! items there is nothing to prorate from, so both must be answered.
//!
//! **PCL-5** (Weathers et al., National Center for PTSD, 2013; scoring as the
//! National Center for PTSD describes it). Twenty items scored 0–4 ("not at all" …
//! "extremely") for the past month, total 0–80. Cluster sums: B intrusion (items
//! 1–5), C avoidance (6–7), D negative alterations in cognition and mood (8–14), E
//! arousal and reactivity (15–20). Provisional diagnosis by the DSM-5 rule: an item
//! rated 2 ("moderately") or higher is a symptom endorsed, and at least 1 B, 1 C, 2 D
//! and 2 E items must be endorsed. The National Center for PTSD gives a cut-point
//! "between 31 and 33"; **we use 33**, the top of that range: a higher cut-point is
//! the one the Center advises "when attempting to make a provisional diagnosis or to
//! minimize false positives", which is what a flag on a patient's record does. The
//! range itself is Bovin et al.'s (*Psychol Assess* 2016;28:1379–1391), who found
//! scores of 31 to 33 equally efficient against the CAPS-5 in veterans, and 33 was
//! the Center's earlier single recommended cut-point. There are no empirically
//! derived severity ranges for the PCL-5, so its two bands are only "below" and "at
//! or above" the cut-point. **Missing items**: the Center publishes no rule for them,
//! and the cluster rule cannot be decided without every item, so all twenty must be
//! answered.
//!
//! **PHQ-A**, the PHQ-9 modified for adolescents (from Johnson, Harris, Spitzer &
//! Williams, *J Adolesc Health* 2002;30:196–204, in the form of the GLAD-PC toolkit
//! and the NIMH ASQ toolkit). Nine items worded for teenagers (irritability in item 1,
//! school work in item 7), scored 0–3 and banded as the PHQ-9. Four more questions
//! are recorded, not scored: depressed most days in the past year, difficulty, serious
//! thoughts of ending one's life in the past month, and a suicide attempt ever. Item 9
//! above 0 and "yes" to thoughts of ending one's life raise [`Flag::SelfHarm`]; "yes"
//! to an attempt ever raises [`Flag::SuicideAttemptHistory`]. The cut-point for major
//! depression is 11 (Richardson et al., *Pediatrics* 2010;126:1117–1123: 11 or more,
//! sensitivity 89.5%, specificity 77.5%; the GLAD-PC scoring sheet's "a total
//! score greater than 10" says the same). Ages 12–18: the instrument was validated in 13–18-year-olds,
//! and adolescent depression screening is recommended from 12 (USPSTF). **Missing
//! items**: no published rule for the adolescent form, so all nine must be answered.
//!
//! **PSC-17**, the Pediatric Symptom Checklist-17 (Gardner, Murphy, Childs et al.,
//! *Ambulatory Child Health* 1999;5:225–236; scoring as the PSC's authors at
//! Massachusetts General Hospital publish it, in the "Pediatric Symptom Checklist 17
//! Scoring" instructions). A **parent or guardian** answers about the child: seventeen
//! items, in the order of the published form, rated "Never" 0, "Sometimes" 1,
//! "Often" 2, total 0–34; 15 or more is a positive screen. Three subscales with their
//! own cut-points: internalizing (items 2, 6, 9, 11, 15) positive at 5 or more,
//! attention (1, 3, 7, 13, 17) at 7 or more, externalizing (4, 5, 8, 10, 12, 14, 16)
//! at 7 or more. **Missing items**, by the scoring instructions: "items that are left
//! blank are simply ignored (i.e., score equals 0)", and with four or more blank the
//! form is invalid — so up to three may be unanswered, each counting 0 in the total
//! and its subscale, never prorated. It is a screen, not a severity scale, though it
//! is often repeated to follow a child. **Ages 4–17**: the derivation sample
//! (Gardner 1999) and the national replication (Murphy et al., *Pediatrics*
//! 2016;138:e20160038, 80 680 outpatients) were children of 4 to 15, and a national
//! community sample of parents of children of 3 to 17 (*Aust N Z J Psychiatry* 2025,
//! doi:10.1177/00048674251342952) supported its three factors through 17; we stop
//! at 17, where the parent form gives way to the patient's own instruments.
//!
//! The others are self-report: the patient answers, even when a clinician reads
//! the questions aloud. Clinician-rated instruments come later.

use crate::change::ChangeCriteria;
use crate::instrument::{
    AgeRange, AnswerOption, Band, Flag, FlagRule, Instrument, InstrumentCode, Item, Purpose,
    Respondent, ScoringRule, Subscale,
};

/// Every instrument definition Tenet knows, every version.
pub fn catalogue() -> &'static [Instrument] {
    &CATALOGUE
}

static CATALOGUE: [Instrument; 7] = [PHQ_9, GAD_7, PHQ_2, GAD_2, PCL_5, PHQ_A, PSC_17];

const PATIENT: &[Respondent] = &[Respondent::Patient];

const ADULTS: AgeRange = AgeRange {
    years_min: 18,
    years_max: None,
};

const FREQUENCY_TWO_WEEKS: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        label: "Not at all",
    },
    AnswerOption {
        value: 1,
        label: "Several days",
    },
    AnswerOption {
        value: 2,
        label: "More than half the days",
    },
    AnswerOption {
        value: 3,
        label: "Nearly every day",
    },
];

const DIFFICULTY: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        label: "Not difficult at all",
    },
    AnswerOption {
        value: 1,
        label: "Somewhat difficult",
    },
    AnswerOption {
        value: 2,
        label: "Very difficult",
    },
    AnswerOption {
        value: 3,
        label: "Extremely difficult",
    },
];

const YES_NO: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        label: "No",
    },
    AnswerOption {
        value: 1,
        label: "Yes",
    },
];

const BOTHERED: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        label: "Not at all",
    },
    AnswerOption {
        value: 1,
        label: "A little bit",
    },
    AnswerOption {
        value: 2,
        label: "Moderately",
    },
    AnswerOption {
        value: 3,
        label: "Quite a bit",
    },
    AnswerOption {
        value: 4,
        label: "Extremely",
    },
];

const SELF_HARM_ANY: &[FlagRule] = &[FlagRule {
    flag: Flag::SelfHarm,
    at_least: 1,
}];

const SUICIDE_ATTEMPT_YES: &[FlagRule] = &[FlagRule {
    flag: Flag::SuicideAttemptHistory,
    at_least: 1,
}];

/// A scored item with the given options and no flags.
const fn scored(code: &'static str, text: &'static str, options: &'static [AnswerOption]) -> Item {
    Item {
        code,
        text,
        options,
        scored: true,
        flags: &[],
    }
}

/// An item that is recorded and never summed.
const fn unscored(
    code: &'static str,
    text: &'static str,
    options: &'static [AnswerOption],
    flags: &'static [FlagRule],
) -> Item {
    Item {
        code,
        text,
        options,
        scored: false,
        flags,
    }
}

const DIFFICULTY_TEXT: &str = "If you checked off any problems, how difficult have these problems made it for you to do your work, take care of things at home, or get along with other people?";

// ---------------------------------------------------------------------------------
// PHQ-9 and PHQ-2

const PHQ_9_ITEMS: &[Item] = &[
    scored(
        "1",
        "Little interest or pleasure in doing things",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "2",
        "Feeling down, depressed, or hopeless",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "3",
        "Trouble falling or staying asleep, or sleeping too much",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "4",
        "Feeling tired or having little energy",
        FREQUENCY_TWO_WEEKS,
    ),
    scored("5", "Poor appetite or overeating", FREQUENCY_TWO_WEEKS),
    scored(
        "6",
        "Feeling bad about yourself — or that you are a failure or have let yourself or your family down",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "7",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "8",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite — being so fidgety or restless that you have been moving around a lot more than usual",
        FREQUENCY_TWO_WEEKS,
    ),
    Item {
        code: "9",
        text: "Thoughts that you would be better off dead or of hurting yourself in some way",
        options: FREQUENCY_TWO_WEEKS,
        scored: true,
        flags: SELF_HARM_ANY,
    },
    unscored("difficulty", DIFFICULTY_TEXT, DIFFICULTY, &[]),
];

const DEPRESSION_BANDS: &[Band] = &[
    Band {
        code: "minimal",
        label: "None–minimal",
        min: 0,
        max: 4,
    },
    Band {
        code: "mild",
        label: "Mild",
        min: 5,
        max: 9,
    },
    Band {
        code: "moderate",
        label: "Moderate",
        min: 10,
        max: 14,
    },
    Band {
        code: "moderately-severe",
        label: "Moderately severe",
        min: 15,
        max: 19,
    },
    Band {
        code: "severe",
        label: "Severe",
        min: 20,
        max: 27,
    },
];

const TWO_WEEKS_PROMPT: &str =
    "Over the last 2 weeks, how often have you been bothered by any of the following problems?";

const PHQ_9: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("phq-9"),
    version: 1,
    title: "Patient Health Questionnaire-9 (PHQ-9)",
    prompt: TWO_WEEKS_PROMPT,
    source: "Kroenke K, Spitzer RL, Williams JBW. The PHQ-9: validity of a brief depression severity measure. J Gen Intern Med 2001;16:606-613. Missing items: NHS Data Dictionary, Patient Health Questionnaire-9.",
    purpose: Purpose::Severity,
    respondents: PATIENT,
    ages: ADULTS,
    items: PHQ_9_ITEMS,
    rule: ScoringRule::ProratedSum {
        missing_items_max: 2,
    },
    bands: DEPRESSION_BANDS,
    subscales: &[],
    positive_from: Some(10),
    change: Some(ChangeCriteria {
        reliable_change_min: 6,
        remission_below: 5,
    }),
};

const SCREEN_BANDS: &[Band] = &[
    Band {
        code: "negative",
        label: "Negative screen",
        min: 0,
        max: 2,
    },
    Band {
        code: "positive",
        label: "Positive screen",
        min: 3,
        max: 6,
    },
];

const PHQ_2: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("phq-2"),
    version: 1,
    title: "Patient Health Questionnaire-2 (PHQ-2)",
    prompt: TWO_WEEKS_PROMPT,
    source: "Kroenke K, Spitzer RL, Williams JBW. The Patient Health Questionnaire-2: validity of a two-item depression screener. Med Care 2003;41:1284-1292.",
    purpose: Purpose::Screening,
    respondents: PATIENT,
    ages: ADULTS,
    items: PHQ_9_ITEMS.split_at(2).0,
    rule: ScoringRule::Sum,
    bands: SCREEN_BANDS,
    subscales: &[],
    positive_from: Some(3),
    change: None,
};

// ---------------------------------------------------------------------------------
// GAD-7 and GAD-2

const GAD_7_ITEMS: &[Item] = &[
    scored(
        "1",
        "Feeling nervous, anxious, or on edge",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "2",
        "Not being able to stop or control worrying",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "3",
        "Worrying too much about different things",
        FREQUENCY_TWO_WEEKS,
    ),
    scored("4", "Trouble relaxing", FREQUENCY_TWO_WEEKS),
    scored(
        "5",
        "Being so restless that it is hard to sit still",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "6",
        "Becoming easily annoyed or irritable",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "7",
        "Feeling afraid, as if something awful might happen",
        FREQUENCY_TWO_WEEKS,
    ),
    unscored("difficulty", DIFFICULTY_TEXT, DIFFICULTY, &[]),
];

const GAD_7: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("gad-7"),
    version: 1,
    title: "Generalized Anxiety Disorder-7 (GAD-7)",
    prompt: TWO_WEEKS_PROMPT,
    source: "Spitzer RL, Kroenke K, Williams JBW, Löwe B. A brief measure for assessing generalized anxiety disorder: the GAD-7. Arch Intern Med 2006;166:1092-1097. Missing items: NHS Data Dictionary, Generalised Anxiety Disorder Questionnaire.",
    purpose: Purpose::Severity,
    respondents: PATIENT,
    ages: ADULTS,
    items: GAD_7_ITEMS,
    rule: ScoringRule::ProratedSum {
        missing_items_max: 2,
    },
    bands: &[
        Band {
            code: "minimal",
            label: "Minimal",
            min: 0,
            max: 4,
        },
        Band {
            code: "mild",
            label: "Mild",
            min: 5,
            max: 9,
        },
        Band {
            code: "moderate",
            label: "Moderate",
            min: 10,
            max: 14,
        },
        Band {
            code: "severe",
            label: "Severe",
            min: 15,
            max: 21,
        },
    ],
    subscales: &[],
    positive_from: Some(10),
    change: Some(ChangeCriteria {
        reliable_change_min: 4,
        remission_below: 5,
    }),
};

const GAD_2: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("gad-2"),
    version: 1,
    title: "Generalized Anxiety Disorder-2 (GAD-2)",
    prompt: TWO_WEEKS_PROMPT,
    source: "Kroenke K, Spitzer RL, Williams JBW, Monahan PO, Löwe B. Anxiety disorders in primary care: prevalence, impairment, comorbidity, and detection. Ann Intern Med 2007;146:317-325.",
    purpose: Purpose::Screening,
    respondents: PATIENT,
    ages: ADULTS,
    items: GAD_7_ITEMS.split_at(2).0,
    rule: ScoringRule::Sum,
    bands: SCREEN_BANDS,
    subscales: &[],
    positive_from: Some(3),
    change: None,
};

// ---------------------------------------------------------------------------------
// PCL-5

const PCL_5_ITEMS: &[Item] = &[
    scored(
        "1",
        "Repeated, disturbing, and unwanted memories of the stressful experience?",
        BOTHERED,
    ),
    scored(
        "2",
        "Repeated, disturbing dreams of the stressful experience?",
        BOTHERED,
    ),
    scored(
        "3",
        "Suddenly feeling or acting as if the stressful experience were actually happening again (as if you were actually back there reliving it)?",
        BOTHERED,
    ),
    scored(
        "4",
        "Feeling very upset when something reminded you of the stressful experience?",
        BOTHERED,
    ),
    scored(
        "5",
        "Having strong physical reactions when something reminded you of the stressful experience (for example, heart pounding, trouble breathing, sweating)?",
        BOTHERED,
    ),
    scored(
        "6",
        "Avoiding memories, thoughts, or feelings related to the stressful experience?",
        BOTHERED,
    ),
    scored(
        "7",
        "Avoiding external reminders of the stressful experience (for example, people, places, conversations, activities, objects, or situations)?",
        BOTHERED,
    ),
    scored(
        "8",
        "Trouble remembering important parts of the stressful experience?",
        BOTHERED,
    ),
    scored(
        "9",
        "Having strong negative beliefs about yourself, other people, or the world (for example, having thoughts such as: I am bad, there is something seriously wrong with me, no one can be trusted, the world is completely dangerous)?",
        BOTHERED,
    ),
    scored(
        "10",
        "Blaming yourself or someone else for the stressful experience or what happened after it?",
        BOTHERED,
    ),
    scored(
        "11",
        "Having strong negative feelings such as fear, horror, anger, guilt, or shame?",
        BOTHERED,
    ),
    scored(
        "12",
        "Loss of interest in activities that you used to enjoy?",
        BOTHERED,
    ),
    scored(
        "13",
        "Feeling distant or cut off from other people?",
        BOTHERED,
    ),
    scored(
        "14",
        "Trouble experiencing positive feelings (for example, being unable to feel happiness or have loving feelings for people close to you)?",
        BOTHERED,
    ),
    scored(
        "15",
        "Irritable behavior, angry outbursts, or acting aggressively?",
        BOTHERED,
    ),
    scored(
        "16",
        "Taking too many risks or doing things that could cause you harm?",
        BOTHERED,
    ),
    scored(
        "17",
        "Being \"superalert\" or watchful or on guard?",
        BOTHERED,
    ),
    scored("18", "Feeling jumpy or easily startled?", BOTHERED),
    scored("19", "Having difficulty concentrating?", BOTHERED),
    scored("20", "Trouble falling or staying asleep?", BOTHERED),
];

const PCL_5: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("pcl-5"),
    version: 1,
    title: "PTSD Checklist for DSM-5 (PCL-5)",
    prompt: "Below is a list of problems that people sometimes have in response to a very stressful experience. In the past month, how much were you bothered by:",
    source: "Weathers FW, Litz BT, Keane TM, Palmieri PA, Marx BP, Schnurr PP. The PTSD Checklist for DSM-5 (PCL-5). National Center for PTSD, 2013. Cut-point: Bovin MJ et al. Psychol Assess 2016;28:1379-1391.",
    purpose: Purpose::Severity,
    respondents: PATIENT,
    ages: ADULTS,
    items: PCL_5_ITEMS,
    rule: ScoringRule::SumWithClusterCriteria { endorsed_at: 2 },
    bands: &[
        Band {
            code: "below-cut-point",
            label: "Below the provisional cut-point",
            min: 0,
            max: 32,
        },
        Band {
            code: "probable-ptsd",
            label: "At or above the provisional cut-point (probable PTSD)",
            min: 33,
            max: 80,
        },
    ],
    subscales: &[
        Subscale {
            code: "B",
            title: "Intrusion",
            items: &["1", "2", "3", "4", "5"],
            endorsed_needed: 1,
            positive_from: None,
        },
        Subscale {
            code: "C",
            title: "Avoidance",
            items: &["6", "7"],
            endorsed_needed: 1,
            positive_from: None,
        },
        Subscale {
            code: "D",
            title: "Negative alterations in cognitions and mood",
            items: &["8", "9", "10", "11", "12", "13", "14"],
            endorsed_needed: 2,
            positive_from: None,
        },
        Subscale {
            code: "E",
            title: "Alterations in arousal and reactivity",
            items: &["15", "16", "17", "18", "19", "20"],
            endorsed_needed: 2,
            positive_from: None,
        },
    ],
    positive_from: Some(33),
    change: None,
};

// ---------------------------------------------------------------------------------
// PHQ-A

const PHQ_A_ITEMS: &[Item] = &[
    scored(
        "1",
        "Feeling down, depressed, irritable, or hopeless?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "2",
        "Little interest or pleasure in doing things?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "3",
        "Trouble falling asleep, staying asleep, or sleeping too much?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "4",
        "Poor appetite, weight loss, or overeating?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "5",
        "Feeling tired, or having little energy?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "6",
        "Feeling bad about yourself – or feeling that you are a failure, or that you have let yourself or your family down?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "7",
        "Trouble concentrating on things like school work, reading, or watching TV?",
        FREQUENCY_TWO_WEEKS,
    ),
    scored(
        "8",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite – being so fidgety or restless that you were moving around a lot more than usual?",
        FREQUENCY_TWO_WEEKS,
    ),
    Item {
        code: "9",
        text: "Thoughts that you would be better off dead, or of hurting yourself in some way?",
        options: FREQUENCY_TWO_WEEKS,
        scored: true,
        flags: SELF_HARM_ANY,
    },
    unscored(
        "past-year",
        "In the past year have you felt depressed or sad most days, even if you felt okay sometimes?",
        YES_NO,
        &[],
    ),
    unscored(
        "difficulty",
        "If you are experiencing any of the problems on this form, how difficult have these problems made it for you to do your work, take care of things at home or get along with other people?",
        DIFFICULTY,
        &[],
    ),
    unscored(
        "ideation-past-month",
        "Has there been a time in the past month when you have had serious thoughts about ending your life?",
        YES_NO,
        SELF_HARM_ANY,
    ),
    unscored(
        "attempt-lifetime",
        "Have you EVER, in your WHOLE LIFE, tried to kill yourself or made a suicide attempt?",
        YES_NO,
        SUICIDE_ATTEMPT_YES,
    ),
];

const PHQ_A: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("phq-a"),
    version: 1,
    title: "PHQ-9 Modified for Adolescents (PHQ-A)",
    prompt: "How often have you been bothered by each of the following symptoms during the past two weeks?",
    source: "Johnson JG, Harris ES, Spitzer RL, Williams JBW. The Patient Health Questionnaire for Adolescents. J Adolesc Health 2002;30:196-204; modified form of the GLAD-PC toolkit (2010). Cut-point: Richardson LP et al. Pediatrics 2010;126:1117-1123.",
    purpose: Purpose::Severity,
    respondents: PATIENT,
    ages: AgeRange {
        years_min: 12,
        years_max: Some(18),
    },
    items: PHQ_A_ITEMS,
    rule: ScoringRule::Sum,
    bands: DEPRESSION_BANDS,
    subscales: &[],
    positive_from: Some(11),
    change: None,
};

// ---------------------------------------------------------------------------------
// PSC-17

const PARENT_GUARDIAN: &[Respondent] = &[Respondent::ParentGuardian];

const NEVER_SOMETIMES_OFTEN: &[AnswerOption] = &[
    AnswerOption {
        value: 0,
        label: "Never",
    },
    AnswerOption {
        value: 1,
        label: "Sometimes",
    },
    AnswerOption {
        value: 2,
        label: "Often",
    },
];

const PSC_17_ITEMS: &[Item] = &[
    scored("1", "Fidgety, unable to sit still", NEVER_SOMETIMES_OFTEN),
    scored("2", "Feels sad, unhappy", NEVER_SOMETIMES_OFTEN),
    scored("3", "Daydreams too much", NEVER_SOMETIMES_OFTEN),
    scored("4", "Refuses to share", NEVER_SOMETIMES_OFTEN),
    scored(
        "5",
        "Does not understand other people's feelings",
        NEVER_SOMETIMES_OFTEN,
    ),
    scored("6", "Feels hopeless", NEVER_SOMETIMES_OFTEN),
    scored("7", "Has trouble concentrating", NEVER_SOMETIMES_OFTEN),
    scored("8", "Fights with other children", NEVER_SOMETIMES_OFTEN),
    scored("9", "Is down on him or herself", NEVER_SOMETIMES_OFTEN),
    scored(
        "10",
        "Blames others for his or her troubles",
        NEVER_SOMETIMES_OFTEN,
    ),
    scored("11", "Seems to be having less fun", NEVER_SOMETIMES_OFTEN),
    scored("12", "Does not listen to rules", NEVER_SOMETIMES_OFTEN),
    scored("13", "Acts as if driven by a motor", NEVER_SOMETIMES_OFTEN),
    scored("14", "Teases others", NEVER_SOMETIMES_OFTEN),
    scored("15", "Worries a lot", NEVER_SOMETIMES_OFTEN),
    scored(
        "16",
        "Takes things that do not belong to him or her",
        NEVER_SOMETIMES_OFTEN,
    ),
    scored("17", "Distracted easily", NEVER_SOMETIMES_OFTEN),
];

const PSC_17: Instrument = Instrument {
    code: InstrumentCode::new_unchecked("psc-17"),
    version: 1,
    title: "Pediatric Symptom Checklist-17 (PSC-17)",
    prompt: "Emotional and physical health go together in children. Because parents are often the first to notice a problem with their child's behavior, emotions, or learning, you may help your child get the best care possible by answering these questions. Please indicate which statement best describes your child.",
    source: "Gardner W, Murphy M, Childs G, et al. The PSC-17: a brief pediatric symptom checklist with psychosocial problem subscales. A report from PROS and ASPN. Ambulatory Child Health 1999;5:225-236. Scoring and missing items: Pediatric Symptom Checklist 17 Scoring instructions, Massachusetts General Hospital. Replication: Murphy JM et al. Pediatrics 2016;138:e20160038.",
    purpose: Purpose::Screening,
    respondents: PARENT_GUARDIAN,
    ages: AgeRange {
        years_min: 4,
        years_max: Some(17),
    },
    items: PSC_17_ITEMS,
    rule: ScoringRule::SumUnansweredAsZero {
        missing_items_max: 3,
    },
    bands: &[
        Band {
            code: "negative",
            label: "Negative screen",
            min: 0,
            max: 14,
        },
        Band {
            code: "positive",
            label: "Positive screen",
            min: 15,
            max: 34,
        },
    ],
    subscales: &[
        Subscale {
            code: "internalizing",
            title: "Internalizing",
            items: &["2", "6", "9", "11", "15"],
            endorsed_needed: 0,
            positive_from: Some(5),
        },
        Subscale {
            code: "attention",
            title: "Attention",
            items: &["1", "3", "7", "13", "17"],
            endorsed_needed: 0,
            positive_from: Some(7),
        },
        Subscale {
            code: "externalizing",
            title: "Externalizing",
            items: &["4", "5", "8", "10", "12", "14", "16"],
            endorsed_needed: 0,
            positive_from: Some(7),
        },
    ],
    positive_from: Some(15),
    change: None,
};
