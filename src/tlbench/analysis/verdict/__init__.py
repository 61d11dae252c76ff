"""analysis/verdict"""
