from rheostat.cli import main

main()
