"""models/backbones"""
