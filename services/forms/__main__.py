from services.forms.server import main

main()
