"""Tests of the deployment kit (deploy/): the shipped configurations, run for real."""
