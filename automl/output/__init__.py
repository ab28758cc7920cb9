"""What users read and take away from a stored study (internal): rich rendering, the HTML
report and its plots, export, predictions on new data, and study comparison. Everything here
reads the study store; nothing here runs a search.
"""
