"""daj.models"""
