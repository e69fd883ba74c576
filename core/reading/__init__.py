"""Reading data: RetailRocket CSV files and prepared parquet into the prepared events table
(docs/DATA_CONTRACT.md), the categoryid snapshots and their as-of join, and the CSV checks
whose messages name the file, column, rows and fix.
"""
