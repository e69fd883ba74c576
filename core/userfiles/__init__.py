"""A user's files in and out: uploads read safely, downloads and the HTML report written safely,
template files, and ``python -m core score`` for files beyond the dashboard's budget.
"""
