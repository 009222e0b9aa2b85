from seqattn.cli import main

main()
