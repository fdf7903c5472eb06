from turngym.cli import main

main()
