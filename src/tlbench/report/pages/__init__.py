"""report/pages"""
