from cloud_sync.cli.main import main

main()
