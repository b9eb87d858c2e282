"""Running a step: a plan step, a Ralph loop or a question, then its QA, and what follows its outcome.

A step is claimed with compare-and-set, so two workers never run it twice; its outcome is settled
through the state machine, and whatever follows (QA, the next step, the PR) is queued.
"""
