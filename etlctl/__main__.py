from etlctl.cli.main import main

main()
