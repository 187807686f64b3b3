"""The control centre's figures: lighting rate, online rate, flood board, case figures, chart
series and the daily report, read back from the point store and the alert store.

`figures.readers` is the read side of each store (one `PointReader` per store), `figures.service`
computes the figures, `figures.api` serves them, `figures.report` makes and keeps the daily report.
"""
