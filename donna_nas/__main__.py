from donna_nas.cli import main

main()
