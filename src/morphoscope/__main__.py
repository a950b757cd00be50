from morphoscope.cli import main

main()
