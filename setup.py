from setuptools import find_packages, setup

setup(
    name="vmpooler-py",
    version="0.1.0",
    description="Pools of ready virtual machines behind the vmpooler API v1, in one Python process",
    packages=find_packages(include=["vmpooler", "vmpooler.*"]),
    python_requires=">=3.9",
    install_requires=[
        "tornado>=6.1",
        "sqlalchemy>=2.0",
        "alembic>=1.9",
        "pyvmomi>=8.0",
        "pyyaml>=5.4",
        "bcrypt>=4.0",
        "coolname>=2.2",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-tornado>=0.8", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["vmpooler = vmpooler.cli:main"]},
)
