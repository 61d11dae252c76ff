"""analysis/transferability"""
