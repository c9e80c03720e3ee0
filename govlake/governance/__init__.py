"""Governance (权限管理): the resource catalog (政务信息资源目录), masking, roles and policies, data requests and
grants, and their enforcement where consumers read (the SQL endpoint)."""
