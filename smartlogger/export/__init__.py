"""smartlogger.export: Excel workbooks with native charts, CSV and Parquet (docs/EXCEL.md).

Modules: ``logger_workbook`` (one logfile), ``string_report`` (a capacity test),
``longterm`` (a blackbox's lifetime record), ``data`` (raw samples as CSV/Parquet),
``charts`` (shared chart builders: warning lines orange, alarm lines red),
``reduce`` (min/max envelope and LTTB for large series), ``sheetstream`` (fast
numeric sheets in openpyxl write-only workbooks), ``layout`` (styled text sheets),
``timeaxis`` (site local time with the UTC offset stated), ``inputs`` (plain input
types), ``adapters`` (from logfiles and analysis results), ``check`` (read-back
self-check), ``examples`` (the documented simulated example workbooks).

Importing this package imports nothing heavy; import the module you need.
"""
