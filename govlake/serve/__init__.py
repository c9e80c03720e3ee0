"""Serving: what users reach GovLake through (Airflow UI, the SQL endpoint, the reports server, the dashboard).

Every server here binds loopback by default and refuses a port another program owns.
"""
