from services.janitor.main import main

main()
