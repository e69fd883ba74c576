"""Plain-language meanings of the words the pages use; each page lists the ones it shows."""

from __future__ import annotations

import streamlit as st

# Plain-language meanings of the words the pages use; each page lists the ones it shows.
GLOSSARY: dict[str, str] = {
    "case": "One prediction task: a view that has at least one earlier view by the same visitor "
    "within 24 hours. The earlier views (the last 100 at most) are its history; the task is to "
    "name the category of this view.",
    "candidate": "A category the ranker may put forward for a case: every category in the history, "
    "plus, for some models, categories that often follow the last one (suggested, not viewed).",
    "coverage": "Share of cases whose actual next category is among the candidates. A ranker can only "
    "be right on covered cases.",
    "top1": "Top-1 hit rate on covered cases: how often the actual next category is ranked first, "
    "among the cases where it was a candidate. top3: within the first three.",
    "top1_all": "Top-1 hit rate on all cases, uncovered ones counted as misses (top1 × coverage). "
    "This is what a visitor experiences. top3_all: the same for the first three.",
    "rankers": "The ways of ranking the candidates. rule: the count + recency rule (most viewed "
    "category first, the most recent one on a tie). logreg: logistic regression; hgb: "
    "gradient-boosted trees; rf: random forest; these three learn from the 7 candidate "
    "features. A name ending in _markov5 also ranks up to five suggested categories.",
    "score": "The ranker's number for a candidate: higher means more likely to be viewed next. "
    "Scores order the candidates of one history; they are not probabilities and are not "
    "comparable between histories.",
    "raw / cleaned": "raw: all events of the build. cleaned (clean): the same events without the "
    "events of the users the detector flags. The same colour marks each of them on every chart.",
    "95% interval": "The range the value would fall in 95 times out of 100 if the test visitors were "
    "drawn again (bootstrap over visitors). Two values whose intervals overlap may not really differ.",
    "per case / per visitor": "Per case: every case counts once, so very active visitors weigh more. "
    "Per visitor: each visitor's cases are averaged first, so every visitor counts once.",
    "anomaly score": "The detector's number for a user: higher means the behaviour is further from "
    "the training users'. Only its order matters; scores of different detectors are not comparable.",
    "detectors": "The four ways of scoring users. isolation_forest: isolates unusual users with "
    "random splits (few splits = unusual). robust_z: the largest distance from the typical user on "
    "any behaviour column, in σ. hbos: adds up how rare each behaviour value is (histograms). "
    "ecod: adds up how far in the upper tail each behaviour value lies. volume_rule (a baseline, "
    "not a detector): flag the users with the most events.",
    "behaviour columns": "What the detectors look at, each computed from the 16 features and oriented "
    "so that higher = more bot-like: intensity (views per active day), new_items_per_day, breadth "
    "(categories per active day), fast_share (share of views less than 5 s apart), tight_gaps "
    "(how short the longest usual gaps between events are), night (share of events between 0:00 and "
    "6:00 UTC), session_rate (sessions per active day), repeat_views (views of items already seen), "
    "returns_per_item, unbought_carts and unbought_cart_rate (add-to-carts of visitors who never "
    "bought). A purchase never raises the score of a user.",
    "σ (robust z)": "How far a behaviour value is above the typical training user, in robust "
    "standard deviations (the median, and the spread of the users above it). 3σ is far above "
    "what most users do; values below typical count as 0 (one-sided).",
    "share": "The share of users a detector flags: the users whose anomaly score is in the top "
    "share (for example the top 4%).",
    "ties": "Users whose scores are exactly equal. The threshold for a share is the (1 − share) "
    "quantile of the scores (linear interpolation between neighbours) and every user with a score "
    "at or above it is flagged, so all users tied at the threshold are flagged together. When many "
    "users share a score the flagged share can be above the share asked for, and two nearby shares "
    "can flag the same users. The dashboard, the API and the build use this one rule.",
    "frozen threshold": "The anomaly-score threshold fixed once on the training users at the chosen "
    "share (the frozen operating point). New batches are flagged against this number, so the share "
    "flagged in a batch can differ.",
    "operating point": "A share of users to flag and the threshold that goes with it. The frozen "
    "operating point is the one fixed on the training users when the build ran.",
    "policy": "keep visitors who bought: a user with a transaction is never flagged, even above the "
    "threshold, so the flagged share can be below the share asked for. flag buyers too (no buyer "
    "policy): the threshold alone decides.",
    "PR-AUC": "Area under the precision–recall curve: how well a detector's scores put the known "
    "abnormal users first, over every threshold. 1 is perfect; a random score gets the share of "
    "abnormal users (about 3% here).",
    "precision": "Of the users flagged, the share that are really abnormal.",
    "recall": "Of the really abnormal users, the share that are flagged.",
    "Jaccard": "Overlap of two sets of flagged users: the users both flag, divided by the users "
    "either flags. 100% = the same users, 0% = no user in common.",
    "line": "Where a row is in an uploaded file: the line number a spreadsheet shows, with the "
    "header on line 1 and the first data row on line 2. Every message and table uses it.",
}


def glossary(*terms: str) -> None:
    """A collapsed 'What the terms mean' expander with the given terms (all when none given)."""
    with st.expander("What the terms mean", icon=":material/menu_book:"):
        st.markdown("\n".join(f"- **{t}**: {GLOSSARY[t]}" for t in (terms or GLOSSARY)))
